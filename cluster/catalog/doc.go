// Package catalog owns the replicated catalogue of a shoal cluster: boot
// groups, client machines (keyed by MAC), root-filesystem images with their
// versions, the cluster's own nodes, and the dynamic DHCP leases of clients
// without a fixed address.
//
// The package is the pure, deterministic core of a Raft finite state machine.
// It imports no Raft library and performs no I/O, reads no clock and uses no
// randomness, so that every replica applying the same log reaches byte-for-byte
// the same state (checked with Digest). Time enters only through Command.At,
// which the proposer sets once before the command is replicated.
//
// Changes arrive as versioned Command envelopes (see command.go). Every
// command goes through one normalisation step (Command.Normalize) before it
// is validated, so State.Validate on a leader and State.Apply on every
// follower judge exactly the same values. Apply is all-or-nothing: when it
// returns an error the state is untouched.
//
// Errors wrap one of three sentinels, ErrInvalid, ErrNotFound and
// ErrConflict, which an HTTP layer maps to 400, 404 and 409. Messages name
// the offending value so a lab administrator can fix the request without
// reading the source.
//
// State is safe for concurrent use; every read method returns a deep copy
// sorted by key, so callers can never alias or mutate the catalogue.
package catalog

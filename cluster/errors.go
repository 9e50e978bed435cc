package cluster

import (
	"errors"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Sentinel errors of the cluster layer. Catalogue rule violations come back
// as catalog.ErrInvalid, catalog.ErrNotFound and catalog.ErrConflict, also
// when the write was forwarded to a leader on another node.
var (
	// ErrNoLeader: no leader could be reached before the write timed out
	// (election in progress, or this node is on the minority side).
	ErrNoLeader = errors.New("no raft leader reachable")
	// ErrNotLeader: this node lost or never had leadership; callers in this
	// package retry on the current leader, so it rarely escapes.
	ErrNotLeader = errors.New("not the raft leader")
	// ErrNotReady: the node is still starting.
	ErrNotReady = errors.New("node is starting")
	// ErrUnknownOutcome: the write was handed to raft but its fate is not
	// known (leadership lost mid-commit, a timeout); it may have been
	// applied. Check before retrying.
	ErrUnknownOutcome = errors.New("write outcome unknown (it may or may not have been applied; check before retrying)")
)

// error kinds on the wire between nodes, so that a forwarded write fails
// with the same sentinel as a local one.
var errorKinds = []struct {
	kind string
	err  error
}{
	{"invalid", catalog.ErrInvalid},
	{"not_found", catalog.ErrNotFound},
	{"conflict", catalog.ErrConflict},
	{"no_leader", ErrNoLeader},
	{"not_leader", ErrNotLeader},
	{"not_ready", ErrNotReady},
	{"unknown_outcome", ErrUnknownOutcome},
}

// ErrorKind names the sentinel err wraps, "" for an unclassified error.
func ErrorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return ""
}

// remoteError is an error reported by another node: the message is the
// remote one, errors.Is sees the sentinel of its kind.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }

func errorFromWire(kind, msg string) error {
	for _, k := range errorKinds {
		if k.kind == kind {
			return &remoteError{msg: msg, kind: k.err}
		}
	}
	return errors.New(msg)
}

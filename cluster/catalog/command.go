package catalog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// CommandVersion is the envelope version this build writes and understands.
// Bump it only for changes an older build must refuse to apply.
const CommandVersion = 1

// CommandType names a catalogue mutation. The list is append-only: a type
// once shipped stays in the Raft log forever, so never rename or reuse one.
type CommandType string

// Command types and their bodies.
const (
	CmdGroupCreate        CommandType = "group.create"         // Group; conflict if it exists
	CmdGroupUpdate        CommandType = "group.update"         // Group; not found if missing; replaces all fields
	CmdGroupDelete        CommandType = "group.delete"         // NameRef; not found if missing; conflict while it has clients
	CmdClientCreate       CommandType = "client.create"        // Client; conflict if the MAC exists
	CmdClientUpdate       CommandType = "client.update"        // Client; not found if missing; Created kept, Updated = At
	CmdClientDelete       CommandType = "client.delete"        // MACRef; not found if missing
	CmdImageVersionAdd    CommandType = "image.version.add"    // ImageVersionAdd; creates the image if new
	CmdImageVersionRemove CommandType = "image.version.remove" // ImageVersionRef; removing the last version deletes the image
	CmdImageActivate      CommandType = "image.activate"       // ImageVersionRef; not found if missing
	CmdImageDelete        CommandType = "image.delete"         // NameRef; conflict while a group uses the image
	CmdNodeUpsert         CommandType = "node.upsert"          // Node
	CmdNodeRemove         CommandType = "node.remove"          // NameRef; not found if missing
	CmdLeaseAcquire       CommandType = "lease.acquire"        // LeaseAcquire; grants or renews the MAC's lease; conflict if the MAC has a fixed IP or the pool is full
	CmdLeaseRelease       CommandType = "lease.release"        // MACRef; not found if the MAC has no lease
)

// operations maps every known type to a constructor of its (empty) operation;
// the rules for each live in apply.go.
var operations = map[CommandType]func() operation{
	CmdGroupCreate:        func() operation { return &groupCreate{} },
	CmdGroupUpdate:        func() operation { return &groupUpdate{} },
	CmdGroupDelete:        func() operation { return &groupDelete{} },
	CmdClientCreate:       func() operation { return &clientCreate{} },
	CmdClientUpdate:       func() operation { return &clientUpdate{} },
	CmdClientDelete:       func() operation { return &clientDelete{} },
	CmdImageVersionAdd:    func() operation { return &imageVersionAdd{} },
	CmdImageVersionRemove: func() operation { return &imageVersionRemove{} },
	CmdImageActivate:      func() operation { return &imageActivate{} },
	CmdImageDelete:        func() operation { return &imageDelete{} },
	CmdNodeUpsert:         func() operation { return &nodeUpsert{} },
	CmdNodeRemove:         func() operation { return &nodeRemove{} },
	CmdLeaseAcquire:       func() operation { return &leaseAcquire{} },
	CmdLeaseRelease:       func() operation { return &leaseRelease{} },
}

// NameRef is the body of commands that address a group, image or node by name.
type NameRef struct {
	Name string `json:"name"`
}

// MACRef is the body of client.delete and lease.release. Any notation
// NormalizeMAC accepts works.
type MACRef struct {
	MAC string `json:"mac"`
}

// ImageVersionAdd is the body of image.version.add. Version.Created is
// ignored and set from Command.At.
type ImageVersionAdd struct {
	Image    string       `json:"image"`
	Version  ImageVersion `json:"version"`
	Activate bool         `json:"activate,omitempty"`
}

// ImageVersionRef is the body of image.version.remove and image.activate.
type ImageVersionRef struct {
	Image   string `json:"image"`
	Version string `json:"version"`
}

// Command is the versioned envelope replicated through the Raft log.
type Command struct {
	V    int             `json:"v"`
	Type CommandType     `json:"type"`
	At   int64           `json:"at"` // unix seconds, set by the proposer; the only clock Apply sees
	Body json.RawMessage `json:"body"`
}

// NewCommand builds a current-version command of type t whose body is the
// JSON encoding of body. It does not validate the body; State.Validate does.
func NewCommand(t CommandType, at int64, body any) (Command, error) {
	if _, ok := operations[t]; !ok {
		return Command{}, unknownType(t)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return Command{}, fmt.Errorf("%s: encoding body: %v: %w", t, err, ErrInvalid)
	}
	return Command{V: CommandVersion, Type: t, At: at, Body: b}, nil
}

// Encode returns the wire form of c.
func (c Command) Encode() ([]byte, error) {
	return json.Marshal(c)
}

// DecodeCommand parses the wire form of a command and checks its envelope:
// the version must be CommandVersion and the type known. The envelope is
// decoded leniently (as the spec asks only the body to be strict), so the
// version check can explain "written by a newer shoal" instead of failing on
// a field a newer envelope might add. The body is checked by Normalize.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return Command{}, fmt.Errorf("decoding command: %v: %w", err, ErrInvalid)
	}
	if err := c.checkEnvelope(); err != nil {
		return Command{}, err
	}
	return c, nil
}

func (c Command) checkEnvelope() error {
	switch {
	case c.V > CommandVersion:
		return fmt.Errorf("command version %d was written by a newer shoal (this one understands %d): %w",
			c.V, CommandVersion, ErrInvalid)
	case c.V != CommandVersion:
		return fmt.Errorf("unsupported command version %d (want %d): %w", c.V, CommandVersion, ErrInvalid)
	}
	if _, ok := operations[c.Type]; !ok {
		return unknownType(c.Type)
	}
	return nil
}

func unknownType(t CommandType) error {
	return fmt.Errorf("unknown command type %q: %w", show(string(t)), ErrInvalid)
}

// Normalize returns c with its body decoded strictly, normalised and
// re-encoded: hostnames lower-cased, MACs in canonical form, an empty group
// boot mode defaulted, empty lists made absent. It is idempotent, and
// Validate and Apply call it themselves, so a leader and its followers judge
// identical values whether or not the proposer normalised first.
func (c Command) Normalize() (Command, error) {
	op, err := c.decode()
	if err != nil {
		return Command{}, err
	}
	b, err := json.Marshal(op.body())
	if err != nil {
		return Command{}, fmt.Errorf("%s: re-encoding body: %v: %w", c.Type, err, ErrInvalid)
	}
	c.Body = b
	return c, nil
}

// decode checks the envelope and returns the normalised operation.
func (c Command) decode() (operation, error) {
	if err := c.checkEnvelope(); err != nil {
		return nil, err
	}
	op := operations[c.Type]()
	if err := decodeStrict(c.Body, op.body()); err != nil {
		return nil, fmt.Errorf("%s: malformed body: %v: %w", c.Type, err, ErrInvalid)
	}
	if err := op.normalize(); err != nil {
		return nil, err
	}
	if t, ok := op.(clocked); ok {
		t.setNow(c.At)
	}
	return op, nil
}

// decodeStrict decodes exactly one JSON object into v, refusing unknown
// fields (a typo like "bootmode" must not silently become the default) and
// trailing data.
func decodeStrict(b []byte, v any) error {
	if len(bytes.TrimSpace(b)) == 0 || bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return errors.New("body is missing")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after body")
	}
	return nil
}

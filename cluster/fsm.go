package cluster

import (
	"fmt"
	"io"

	"github.com/hashicorp/raft"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// fsm is the thin raft wrapper around catalog.State (rqlite's store/fsm.go
// shape): everything about the catalogue's rules lives in the catalog
// package, this only moves bytes between raft and the state.
type fsm struct {
	state *catalog.State
}

// applyResult travels back to the proposer through ApplyFuture.Response.
type applyResult struct {
	Index uint64
	Err   error
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := catalog.DecodeCommand(l.Data)
	if err != nil {
		// A committed entry we cannot read means a bug or a newer shoal
		// wrote it; applying around it would fork the replicas.
		panic(fmt.Sprintf("catalog: cannot decode committed log entry %d: %v", l.Index, err))
	}
	err = f.state.Apply(cmd)
	f.state.SetAppliedIndex(l.Index)
	return applyResult{Index: l.Index, Err: err}
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	b, err := f.state.Snapshot()
	if err != nil {
		return nil, err
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	return f.state.Restore(b)
}

type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}

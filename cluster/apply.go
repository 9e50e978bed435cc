package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// Apply commits cmd through raft from any node: on the leader it is
// proposed directly, elsewhere it is forwarded to the leader's internal API.
// This is the only place writes are routed (rqlite's proxy pattern). While
// there is no leader it waits, up to WriteTimeout, then fails with
// ErrNoLeader. It returns the log index the command was applied at.
func (c *Cluster) Apply(ctx context.Context, cmd catalog.Command) (uint64, error) {
	if err := c.waitReady(ctx); err != nil {
		return 0, err
	}
	cmd, err := cmd.Normalize()
	if err != nil {
		return 0, err
	}
	body, err := cmd.Encode()
	if err != nil {
		return 0, err
	}
	return c.route(ctx, func(ctx context.Context, leaderHTTP string) (uint64, error) {
		if leaderHTTP == "" {
			return c.applyLocal(cmd)
		}
		return c.forwardApply(ctx, leaderHTTP, body)
	})
}

// route calls do with "" when this node leads, else with the leader's HTTP
// address, retrying while there is no leader or leadership moved under us.
// Only failures where nothing can have been committed are retried: a dial
// error or an explicit "not leader"; a timeout mid-request is returned, as
// retrying it could apply the command twice.
func (c *Cluster) route(ctx context.Context, do func(context.Context, string) (uint64, error)) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	reason := "no leader elected"
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 250*time.Millisecond) {
		leaderHTTP, ok, why := c.leaderHTTP()
		if ok {
			idx, err := do(ctx, leaderHTTP)
			if !retryable(err) {
				return idx, err
			}
			why = err.Error()
		}
		if ctx.Err() != nil {
			return 0, fmt.Errorf("%w after %s: %s", ErrNoLeader, c.cfg.WriteTimeout, why)
		}
		reason = why
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w after %s: %s", ErrNoLeader, c.cfg.WriteTimeout, reason)
		case <-time.After(wait):
		}
	}
}

func retryable(err error) bool {
	var op *net.OpError
	return errors.Is(err, ErrNotLeader) || (errors.As(err, &op) && op.Op == "dial")
}

// unknownOutcome wraps failures after which the write may or may not have
// been committed (a leader lost mid-commit, a timeout mid-request): they are
// never retried, since a retry could apply the command twice.
func unknownOutcome(err error) error {
	return fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
}

// leaderHTTP says where the leader's API is: "" and true for this node.
func (c *Cluster) leaderHTTP() (string, bool, string) {
	_, id := c.raft.LeaderWithID()
	switch {
	case id == "":
		return "", false, "no leader elected"
	case string(id) == c.cfg.NodeName:
		return "", true, ""
	}
	m, ok := c.reg.get(string(id))
	if !ok || m.HTTPAddr() == "" {
		return "", false, fmt.Sprintf("leader %s is not known to gossip yet", id)
	}
	return m.HTTPAddr(), true, ""
}

func (c *Cluster) applyLocal(cmd catalog.Command) (uint64, error) {
	if c.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := c.validate(cmd); err != nil {
		return 0, err
	}
	b, err := cmd.Encode()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	f := c.raft.Apply(b, c.cfg.WriteTimeout)
	if err := f.Error(); err != nil {
		// Only these two are refused before the entry enters the log; after
		// ErrLeadershipLost or a timeout the entry may still commit.
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return 0, unknownOutcome(err)
	}
	c.metrics.commit.Observe(time.Since(start).Seconds())
	res, _ := f.Response().(applyResult)
	return res.Index, res.Err
}

// validate checks cmd against the leader's replica. A new leader may not
// have applied the previous term's last entries yet, so a rejection is
// re-checked after a barrier (which applies everything committed) before it
// is believed; the common, valid case costs nothing extra.
func (c *Cluster) validate(cmd catalog.Command) error {
	err := c.state.Validate(cmd)
	if err == nil {
		return nil
	}
	if berr := c.raft.Barrier(c.cfg.WriteTimeout).Error(); berr != nil {
		if errors.Is(berr, raft.ErrNotLeader) || errors.Is(berr, raft.ErrLeadershipTransferInProgress) {
			return fmt.Errorf("%w: %v", ErrNotLeader, berr)
		}
		return unknownOutcome(berr)
	}
	return c.state.Validate(cmd)
}

// wireResult is the internal API's answer to a forwarded write.
type wireResult struct {
	Index uint64 `json:"index,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

func (c *Cluster) forwardApply(ctx context.Context, leaderHTTP string, body []byte) (uint64, error) {
	var res wireResult
	if err := c.postJSON(ctx, "http://"+leaderHTTP+"/v1/internal/apply", body, &res); err != nil {
		return 0, err
	}
	if res.Error != "" {
		return 0, errorFromWire(res.Kind, res.Error)
	}
	return res.Index, nil
}

func (c *Cluster) postJSON(ctx context.Context, url string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	// net/http resends this POST by itself only when nothing was written on
	// a stale keep-alive connection (GetBody is set); no Idempotency-Key, as
	// that would also resend a request the leader may have applied.
	resp, err := c.writec.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return err // nothing was sent: route may retry
		}
		return unknownOutcome(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("POST %s: %s: unreadable answer: %w", url, resp.Status, err)
	}
	return nil
}

// RemoveServer drops a server from the raft configuration via the leader.
func (c *Cluster) RemoveServer(ctx context.Context, id string) error {
	_, err := c.route(ctx, func(ctx context.Context, leaderHTTP string) (uint64, error) {
		if leaderHTTP == "" {
			return 0, c.removeLocal(id)
		}
		b, _ := json.Marshal(map[string]string{"id": id})
		var res wireResult
		if err := c.postJSON(ctx, "http://"+leaderHTTP+"/v1/internal/leave", b, &res); err != nil {
			return 0, err
		}
		if res.Error != "" {
			return 0, errorFromWire(res.Kind, res.Error)
		}
		return 0, nil
	})
	return err
}

func (c *Cluster) removeLocal(id string) error {
	if c.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	c.reg.markLeft(id)
	if err := c.raft.RemoveServer(raft.ServerID(id), 0, 5*time.Second).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return err
	}
	c.log.Info("server left gracefully; removed from raft configuration", "server", id)
	if id != c.cfg.NodeName {
		c.removeNodeRecord(id)
	}
	return nil
}

// ReadBarrier makes the next local read linearizable (raft's ReadIndex
// idea): the leader confirms it still leads and reports its commit index,
// and this node waits until its replica has applied that far.
func (c *Cluster) ReadBarrier(ctx context.Context) error {
	if err := c.waitReady(ctx); err != nil {
		return err
	}
	idx, err := c.route(ctx, func(ctx context.Context, leaderHTTP string) (uint64, error) {
		if leaderHTTP == "" {
			return c.readIndexLocal()
		}
		var res wireResult
		if err := c.getJSON(ctx, "http://"+leaderHTTP+"/v1/internal/read-index", &res); err != nil {
			return 0, err
		}
		if res.Error != "" {
			return 0, errorFromWire(res.Kind, res.Error)
		}
		return res.Index, nil
	})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.WriteTimeout)
	defer cancel()
	return c.WaitApplied(wctx, idx)
}

// readIndexLocal runs on the leader. A barrier (rather than VerifyLeader
// plus the commit index) because raft's applied index moves before the FSM
// has applied, and config entries never reach the FSM: after the barrier
// the catalogue's own applied index covers every write acknowledged so far,
// and committing the barrier proves leadership to a quorum.
func (c *Cluster) readIndexLocal() (uint64, error) {
	if err := c.raft.Barrier(c.cfg.WriteTimeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return 0, fmt.Errorf("%w: read barrier: %v", ErrNoLeader, err)
	}
	return c.state.AppliedIndex(), nil
}

// WaitApplied blocks until the local catalogue has applied the command at
// log index idx (an index Apply or ReadBarrier returned). It watches the
// catalogue's index, not raft's: raft counts an entry applied when it hands
// it to the FSM, before the FSM has run it.
func (c *Cluster) WaitApplied(ctx context.Context, idx uint64) error {
	for c.state.AppliedIndex() < idx {
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica did not reach index %d: %w", idx, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

func (c *Cluster) waitReady(ctx context.Context) error {
	// Check first: select picks at random among ready cases, and callers
	// pass an already-cancelled context to mean "don't wait".
	select {
	case <-c.ready:
		return nil
	default:
	}
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ErrNotReady
	}
}

package transfer

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"golang.org/x/time/rate"

	"github.com/shoal-project/shoal/cluster/catalog"
)

func TestPickRevealFirstCopyLeavesOnce(t *testing.T) {
	order := []int{3, 0, 1, 2}
	ours := []bool{true, true, true, true}
	held := []bool{false, false, true, false} // the client holds piece 2
	shown := []bool{false, false, false, false}
	// Piece 3 is on its way to another client, 0 and 1 have left nowhere.
	score := []int{0, 0, 1, 1}
	if got := pickReveal(order, ours, held, shown, score, true); got != 0 {
		t.Fatalf("picked %d, want 0 (first in order with score 0)", got)
	}
	shown[0] = true
	if got := pickReveal(order, ours, held, shown, score, true); got != 1 {
		t.Fatalf("picked %d, want 1", got)
	}
	shown[1] = true
	// Only pieces already out remain: during the first copy, nothing.
	if got := pickReveal(order, ours, held, shown, score, true); got != -1 {
		t.Fatalf("picked %d during the first copy, want -1: piece 3 is already on its way", got)
	}
	// Once every piece is held somewhere, the rarest the client lacks.
	score = []int{1, 1, 2, 3}
	shown = []bool{false, false, false, false}
	if got := pickReveal(order, ours, held, shown, score, false); got != 0 {
		t.Fatalf("picked %d after the first copy, want 0 (the rarest, first in order)", got)
	}
}

func TestPickRevealOnlyOursNotHeldNotShown(t *testing.T) {
	order := []int{0, 1, 2}
	score := []int{0, 0, 0}
	if got := pickReveal(order, []bool{false, true, true}, []bool{false, true, false}, []bool{false, false, true}, score, true); got != -1 {
		t.Fatalf("picked %d: 0 is not ours, 1 is held, 2 was shown; want -1", got)
	}
}

// fakeConn is a connection as the library hands it to callbacks, with the
// shoal extension registered locally under id 1.
func fakeConn() *torrent.PeerConn {
	pc := &torrent.PeerConn{LocalLtepProtocolMap: &torrent.LocalLtepProtocolMap{}}
	pc.LocalLtepProtocolMap.AddUserProtocol(extReveal)
	return pc
}

func TestRevealClientRewritesOnlyRevealingPeers(t *testing.T) {
	rc := newRevealClient(10)
	node, other := fakeConn(), fakeConn()
	rc.handshake(node, &pp.ExtendedHandshakeMessage{M: map[pp.ExtensionName]pp.ExtensionNumber{extSeed: 7}})
	rc.handshake(other, &pp.ExtendedHandshakeMessage{M: map[pp.ExtensionName]pp.ExtensionNumber{"ut_metadata": 2}})
	if !rc.seed(node) || rc.seed(other) {
		t.Fatal("only the peer advertising the extension is a revealing node")
	}
	reveal := func(p []byte) pp.Message { return pp.Message{Type: pp.Extended, ExtendedID: 1, ExtendedPayload: p} }
	idx := func(i uint32) []byte { return binary.BigEndian.AppendUint32(nil, i) }
	cases := []struct {
		name string
		in   pp.Message
		want pp.Message
	}{
		{"have all hidden", pp.Message{Type: pp.HaveAll}, pp.Message{Type: pp.HaveNone}},
		{"own have dropped", pp.Message{Type: pp.Have, Index: 4}, pp.Message{Keepalive: true}},
		{"reveal becomes have", reveal(idx(9)), pp.Message{Type: pp.Have, Index: 9}},
		{"reveal past the end ignored", reveal(idx(10)), pp.Message{Keepalive: true}},
		{"short reveal ignored", reveal([]byte{0, 1}), pp.Message{Keepalive: true}},
		{"requests untouched", pp.Message{Type: pp.Request, Index: 1, Length: 5}, pp.Message{Type: pp.Request, Index: 1, Length: 5}},
	}
	for _, c := range cases {
		m := c.in
		rc.read(node, &m)
		if m.Type != c.want.Type || m.Keepalive != c.want.Keepalive || m.Index != c.want.Index || m.Length != c.want.Length {
			t.Errorf("%s: got %v %d (keepalive %v), want %v %d (keepalive %v)", c.name,
				m.Type, m.Index, m.Keepalive, c.want.Type, c.want.Index, c.want.Keepalive)
		}
	}
	bf := pp.Message{Type: pp.Bitfield, Bitfield: []bool{true, true, false}}
	rc.read(node, &bf)
	if len(bf.Bitfield) != 3 || bf.Bitfield[0] || bf.Bitfield[1] {
		t.Errorf("bitfield of a revealing node: %v, want 3 pieces, none set", bf.Bitfield)
	}
	m := pp.Message{Type: pp.HaveAll}
	rc.read(other, &m)
	if m.Type != pp.HaveAll {
		t.Errorf("a peer without the extension had its have-all rewritten to %v", m.Type)
	}
	rc.closed(node)
	if rc.seed(node) {
		t.Error("still revealing after the node's connection closed")
	}
}

// syncFrom runs an agent's sync of blob into a new file, with peers as the
// torrent addresses it is given, and returns the report, the target and
// the (closed) syncer; setup, if set, runs before the sync starts.
func syncFrom(t *testing.T, blob catalog.Blob, setup func(*syncer), peers ...string) (SyncReport, string, *syncer) {
	t.Helper()
	target := filepath.Join(t.TempDir(), "disk.img")
	fresh, err := prepareTarget(target, blob.Size)
	if err != nil {
		t.Fatal(err)
	}
	p := &plan{image: "img", blob: blob, meta: &metainfo.MetaInfo{InfoBytes: blob.Info}, peers: peers}
	s, err := newSyncer(SyncConfig{Target: target, ListenAddr: "127.0.0.1:0", Logger: quiet()}, p)
	if err != nil {
		t.Fatal(err)
	}
	s.fresh = fresh
	defer s.close()
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	rep := SyncReport{Size: blob.Size}
	if err := s.run(ctx, &rep, func(SyncProgress) {}); err != nil {
		t.Fatal(err)
	}
	return rep, target, s
}

func targetSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sumOf(b)
}

// One agent, one node: every piece is revealed exactly once and leaves the
// node exactly once.
func TestRevealSingleAgent(t *testing.T) {
	cat := &fakeCatalog{}
	a := startNode(t, cat, &mesh{}, "", 0)
	data := randomData(7, blobSize)
	blob := ingestData(t, a.cfg.Dir, data)
	if err := a.AddLocal(blob); err != nil {
		t.Fatal(err)
	}
	cat.setCurrent("img", blob)
	waitFor(t, waitLong, "the node to verify its blob", func() bool { return haveBlob(a.Server, blob.ID) })
	// An upload limit the pacer left on is lifted once the copy is complete.
	rep, target, s := syncFrom(t, blob, func(s *syncer) { s.upload.SetLimit(1 << 20) }, a.Addr())
	if s.upload.Limit() != rate.Inf {
		t.Errorf("upload limit %v after the sync, want none: a complete client seeds at full speed", s.upload.Limit())
	}
	if targetSum(t, target) != sumOf(data) {
		t.Fatal("synced target differs from the blob")
	}
	pieces := float64((blob.Size + blob.PieceLength - 1) / blob.PieceLength)
	if got := a.metric(t, "shoal_transfer_reveals_total"); got != pieces {
		t.Errorf("node revealed %v pieces, want %v (each once)", got, pieces)
	}
	if got := a.metric(t, "shoal_transfer_bytes_uploaded_total"); got != float64(blob.Size) {
		t.Errorf("node uploaded %v bytes, want exactly the blob's %d", got, blob.Size)
	}
	if rep.Fetched != blob.Size || rep.Wasted != 0 {
		t.Errorf("agent fetched %d (wasted %d), want %d and 0", rep.Fetched, rep.Wasted, blob.Size)
	}
}

// An agent asks a revealing node only for what it revealed: a node that
// reveals nothing sends nothing, and the agent takes every piece from a
// second node instead.
func TestRevealUnrevealedPiecesAreNotRequested(t *testing.T) {
	cat := &fakeCatalog{}
	m := &mesh{}
	a, b := startNode(t, cat, m, "", 0), startNode(t, cat, m, "", 0)
	m.add(a.Server, b.Server)
	a.reveal.window.Store(0)
	data := randomData(8, blobSize)
	blob := ingestData(t, a.cfg.Dir, data)
	if err := a.AddLocal(blob); err != nil {
		t.Fatal(err)
	}
	cat.setCurrent("img", blob)
	waitFor(t, waitLong, "the second node to fill itself from the first", func() bool { return haveBlob(b.Server, blob.ID) })
	before := a.metric(t, "shoal_transfer_bytes_uploaded_total")
	_, target, _ := syncFrom(t, blob, nil, a.Addr(), b.Addr())
	if targetSum(t, target) != sumOf(data) {
		t.Fatal("synced target differs from the blob")
	}
	if got := a.metric(t, "shoal_transfer_bytes_uploaded_total") - before; got != 0 {
		t.Errorf("the node that revealed nothing sent the agent %v bytes, want 0", got)
	}
	if got := a.metric(t, "shoal_transfer_reveal_clients_total"); got != 1 {
		t.Errorf("the node that revealed nothing saw %v agent connections, want 1 (else it proves nothing)", got)
	}
	if got := b.metric(t, "shoal_transfer_reveals_total"); got == 0 {
		t.Error("the second node revealed nothing, yet the agent completed")
	}
}

func TestRevealScorePrefersHeldPieces(t *testing.T) {
	if revealScore(0, 0) != 0 {
		t.Fatal("a piece that has not left the node must score 0")
	}
	held, onWay, both := revealScore(1, 0), revealScore(0, 1), revealScore(1, 1)
	if !(held < onWay && onWay < both) {
		t.Fatalf("scores held %d, on its way %d, held and on its way %d: want them in that order", held, onWay, both)
	}
}

func TestCompleteRuns(t *testing.T) {
	done := torrent.PieceState{}
	done.Complete = true
	runs := torrent.PieceStateRuns{{PieceState: done, Length: 2}, {Length: 1}, {PieceState: done, Length: 2}}
	ours := make([]bool, 5)
	completeRuns(runs, ours)
	if want := []bool{true, true, false, true, true}; !slices.Equal(ours, want) {
		t.Fatalf("complete pieces %v, want %v", ours, want)
	}
}

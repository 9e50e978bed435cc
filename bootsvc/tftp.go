package bootsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pin/tftp/v3"
	"golang.org/x/net/ipv4"
)

// TFTPConfig configures the TFTP server for first-stage iPXE binaries.
type TFTPConfig struct {
	// Root is the directory served. Debian's ipxe package installs
	// undionly.kpxe, snponly.efi and ipxe.efi in /usr/lib/ipxe.
	Root string
	// MaxBlockSize caps the negotiated blksize (RFC 2348). 1468 fills one
	// 1500-byte Ethernet frame (1500 - 20 IP - 8 UDP - 4 TFTP), which is
	// what OVMF asks for; iPXE asks for 1432. The library additionally
	// clamps to the receiving interface's MTU.
	MaxBlockSize int
	// Timeout is the per-packet retransmission timeout; Retries how many
	// times a packet is sent before the transfer is abandoned.
	Timeout time.Duration
	Retries int
}

// TFTP limits: RFC 2348 allows 8..65464; below 512 only costs round trips.
const (
	minTFTPBlock = 512
	maxTFTPBlock = 65464
)

// DefaultTFTPConfig serves Debian's iPXE binaries.
func DefaultTFTPConfig() TFTPConfig {
	return TFTPConfig{
		Root:         "/usr/lib/ipxe",
		MaxBlockSize: 1468,
		Timeout:      2 * time.Second,
		Retries:      5,
	}
}

// Validate checks the settings; it does not touch the file system.
func (c TFTPConfig) Validate() error {
	switch {
	case c.Root == "":
		return errors.New("tftp: root directory is required")
	case c.MaxBlockSize < minTFTPBlock || c.MaxBlockSize > maxTFTPBlock:
		return fmt.Errorf("tftp: max block size %d: want %d..%d", c.MaxBlockSize, minTFTPBlock, maxTFTPBlock)
	case c.Timeout <= 0:
		return fmt.Errorf("tftp: timeout %s must be positive", c.Timeout)
	case c.Retries < 1:
		return fmt.Errorf("tftp: retries %d must be at least 1", c.Retries)
	}
	return nil
}

// TFTPServer serves files read-only from a FileRoot. There is no write
// handler: write requests are refused by the library.
type TFTPServer struct {
	cfg  TFTPConfig
	root *FileRoot
	log  *slog.Logger
}

// NewTFTPServer validates cfg and opens its root. Close releases the root.
func NewTFTPServer(cfg TFTPConfig, log *slog.Logger) (*TFTPServer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	root, err := OpenFileRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TFTPServer{cfg: cfg, root: root, log: log}, nil
}

// Close releases the file root. Call it after every Serve has returned.
func (s *TFTPServer) Close() error { return s.root.Close() }

// ReadHandler serves one read request. tsize (RFC 2349) is filled in by the
// library because *os.File is an io.Seeker; it is also set explicitly so
// it does not depend on that detail. The returned error's text goes to the
// client in the TFTP ERROR packet, so it is one of the short FileRoot
// sentinels, never a server path.
func (s *TFTPServer) ReadHandler(filename string, rf io.ReaderFrom) error {
	log := s.log.With("file", filename)
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := ot.RemoteAddr()
		log = log.With("remote", addr.String())
	}
	f, size, err := s.root.Open(filename)
	if err != nil {
		log.Info("tftp request refused", "err", err)
		return clientError(err)
	}
	defer f.Close()
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		ot.SetSize(size)
	}
	n, err := rf.ReadFrom(f)
	if err != nil {
		// Includes OVMF's deliberate abort after it learnt the tsize
		// (error 8): an ordinary event, so Info rather than Warn.
		log.Info("tftp transfer ended early", "bytes", n, "err", err)
		return nil
	}
	log.Debug("tftp transfer done", "bytes", n)
	return nil
}

// clientError reduces err to the sentinel a client may see.
func clientError(err error) error {
	for _, e := range []error{ErrBadPath, ErrNotRegular, ErrFileNotFound} {
		if errors.Is(err, e) {
			return e
		}
	}
	return ErrFileNotFound
}

// ListenAndServe binds addr (e.g. "10.77.0.1:69") and serves until ctx is done.
func (s *TFTPServer) ListenAndServe(ctx context.Context, addr string) error {
	conn, err := ListenTFTP(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, conn)
}

// ListenTFTP binds a UDP socket for Serve with IP_PKTINFO already on. The
// library turns it on only once Serve runs, and the kernel attaches the
// info when a datagram is queued: a request that arrived before would be
// served with the RFC 1350 block size of 512, whatever it asked for,
// because the library learns the interface MTU from that info.
func ListenTFTP(addr string) (net.PacketConn, error) {
	conn, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("tftp: %w", err)
	}
	if err := ipv4.NewPacketConn(conn.(*net.UDPConn)).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tftp: enable IP_PKTINFO: %w", err)
	}
	return conn, nil
}

// Serve serves on conn until ctx is done, then waits for transfers in
// flight (each ends within Timeout*Retries) and closes conn. It returns nil
// after a cancellation. conn belongs to Serve from the call on: the library
// spins if its socket is closed under it, so only Serve may close it.
//
// A fresh library server is built per call because its Shutdown is final.
func (s *TFTPServer) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := tftp.NewServer(s.ReadHandler, nil)
	srv.SetBlockSize(s.cfg.MaxBlockSize)
	srv.SetTimeout(s.cfg.Timeout)
	srv.SetRetries(s.cfg.Retries)
	srv.SetHook(tftpHook{log: s.log})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		srv.Shutdown()
	})
	s.log.Info("tftp serving", "addr", conn.LocalAddr().String(), "root", s.root.Dir())
	err := srv.Serve(conn)
	close(stop)
	wg.Wait()
	conn.Close() // Shutdown skips it if it ran before Serve stored conn
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("tftp: %w", err)
	}
	return nil
}

// tftpHook logs every finished transfer with its negotiated options.
type tftpHook struct{ log *slog.Logger }

func (h tftpHook) OnSuccess(st tftp.TransferStats) {
	h.log.Info("tftp sent", "file", st.Filename, "remote", st.RemoteAddr.String(),
		"blksize", st.Opts["blksize"], "tsize", st.Opts["tsize"], "duration", st.Duration)
}

func (h tftpHook) OnFailure(st tftp.TransferStats, err error) {
	h.log.Debug("tftp failed", "file", st.Filename, "remote", st.RemoteAddr.String(), "err", err)
}

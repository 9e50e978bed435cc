package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultHandshakeTimeout bounds negotiation: a client that connects and
// then says nothing (or trickles options) holds a goroutine and a socket
// only this long. Transmission has no deadline: a booted client may not
// read its root for hours.
const DefaultHandshakeTimeout = 10 * time.Second

// Server answers NBD clients on the listeners given to Serve. Set its
// fields before calling Serve and do not change them afterwards.
type Server struct {
	// Exports is asked which exports exist at each negotiation. Required.
	Exports Exports
	// Log receives one line per connection event; nil discards.
	Log *slog.Logger
	// HandshakeTimeout bounds negotiation; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// OnRead, if set, is called after each successful read with the
	// export's name and the bytes sent (for metrics). It must be quick.
	OnRead func(export string, n int)
}

// Serve accepts connections on ln and serves each in its own goroutine
// until ctx is done. Then it closes ln and every open connection, waits
// for their goroutines and returns nil. It returns an error only if
// Exports is missing or ln fails for a reason other than being closed.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Exports == nil {
		return errors.New("nbd: Server.Exports is nil")
	}
	log := s.logger()
	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		wg    sync.WaitGroup
	)
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()

	err := s.acceptLoop(ctx, ln, func(c net.Conn) {
		mu.Lock()
		if ctx.Err() != nil { // shutting down: AfterFunc may have run already
			mu.Unlock()
			c.Close()
			return
		}
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			s.serveConn(c)
		})
	})
	// Whatever ended the loop, no connection outlives Serve.
	ln.Close()
	mu.Lock()
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	if ctx.Err() != nil {
		log.Info("nbd server stopped", "addr", ln.Addr().String())
		return nil
	}
	return err
}

// acceptLoop hands each accepted connection to handle. Errors other than
// the listener being closed (too many open files, say) are retried with a
// growing pause rather than ending the server, as net/http does.
func (s *Server) acceptLoop(ctx context.Context, ln net.Listener, handle func(net.Conn)) error {
	var pause time.Duration
	for {
		c, err := ln.Accept()
		if err == nil {
			pause = 0
			handle(c)
			continue
		}
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("nbd: accept: %w", err)
		}
		pause = min(max(2*pause, 5*time.Millisecond), time.Second)
		s.logger().Warn("nbd accept failed, retrying", "err", err, "pause", pause)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
	}
}

// serveConn runs one client from handshake to disconnect.
func (s *Server) serveConn(c net.Conn) {
	log := s.logger().With("remote", c.RemoteAddr().String())
	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	cc := &conn{
		c:   c,
		r:   bufio.NewReaderSize(c, 64<<10),
		w:   bufio.NewWriterSize(c, 64<<10),
		log: log,
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	exp, err := cc.negotiate(s.Exports)
	if err != nil {
		if !errors.Is(err, errClientDone) {
			log.Info("nbd handshake ended, closing connection", "err", err)
		}
		return
	}
	_ = c.SetDeadline(time.Time{})
	log = log.With("export", exp.Name)
	cc.log = log
	log.Info("nbd client connected", "size", exp.Size)
	err = cc.transmit(exp, s.OnRead)
	if err != nil && !errors.Is(err, errClientDone) {
		log.Info("nbd connection closed", "err", err)
		return
	}
	log.Info("nbd client disconnected")
}

func (s *Server) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.New(slog.DiscardHandler)
}

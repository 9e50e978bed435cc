package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/nbd"
	"github.com/shoal-project/shoal/transfer"
)

// BootConfig configures the boot services: DHCP (proxy or full), TFTP,
// the IPv6 RA responder and the HTTP boot script. They all hang off one
// interface; with Interface empty none of them runs and the node touches
// no network but its own addresses (the default, so a laptop run is safe).
// The HTTP boot routes are always mounted: they only answer requests.
type BootConfig struct {
	Interface string
	// Address is this node's IPv4 address on Interface that clients are
	// told to use (siaddr, option 54, TFTP and HTTP URLs); empty takes the
	// interface's first IPv4 address.
	Address string
	DHCP    bootsvc.DHCPConfig // ServerIP and HTTPBase are filled in from Address
	TFTP    bootsvc.TFTPConfig
	RA      bool // answer IPv6 router solicitations on Interface
	// AgentBinary is the static shoal binary put into the agent initrd as
	// /init for diskless clients; empty turns the agent initrd off (the
	// image's own initrd then has to do everything). The node's own
	// executable by default.
	AgentBinary string
	// NBDAddr is where image versions are exported read-only over NBD
	// (host:port); empty means <Address>:10809 when Interface is set and
	// off otherwise; "off" turns it off.
	NBDAddr string
	// Ports, for tests on loopback without the privileged ones; zero means
	// the standard 67, 4011 and 69.
	DHCPPort, PXEPort, TFTPPort int
}

// DefaultBootConfig: off until an interface is named; proxyDHCP, Debian's
// iPXE binaries, RA on.
func DefaultBootConfig() BootConfig {
	self, _ := os.Executable()
	return BootConfig{DHCP: bootsvc.DefaultDHCPConfig(), TFTP: bootsvc.DefaultTFTPConfig(), RA: true, AgentBinary: self}
}

// resolve fills Address, the DHCP server IP and HTTP base from the
// interface and the HTTP listen address, and checks that boot clients can
// reach the API at all.
func (b *BootConfig) resolve(httpAddr string) error {
	nbdOff := b.NBDAddr == "off"
	if nbdOff {
		b.NBDAddr = ""
	} else if b.NBDAddr != "" {
		if _, _, err := net.SplitHostPort(b.NBDAddr); err != nil {
			return fmt.Errorf("nbd address %q: %w", b.NBDAddr, err)
		}
	}
	if b.Interface == "" {
		return nil
	}
	ifi, err := net.InterfaceByName(b.Interface)
	if err != nil {
		return fmt.Errorf("boot interface %q: %w", b.Interface, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("boot interface %s: %w", b.Interface, err)
	}
	var first string
	found := false
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.To4() == nil {
			continue
		}
		if first == "" {
			first = ipn.IP.String()
			if b.DHCP.Mode == bootsvc.ModeFull && b.DHCP.Netmask == bootsvc.DefaultDHCPConfig().Netmask {
				b.DHCP.Netmask = net.IP(ipn.Mask).String()
			}
		}
		if ipn.IP.String() == b.Address {
			found = true
			if b.DHCP.Mode == bootsvc.ModeFull {
				b.DHCP.Netmask = net.IP(ipn.Mask).String()
			}
		}
	}
	switch {
	case b.Address == "" && first == "":
		return fmt.Errorf("boot interface %s has no IPv4 address: give it one, or name another interface", b.Interface)
	case b.Address == "":
		b.Address = first
	case !found:
		return fmt.Errorf("boot address %s is not on interface %s", b.Address, b.Interface)
	}
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil {
		return fmt.Errorf("http address %q: %w", httpAddr, err)
	}
	if ip := net.ParseIP(host); host != "" && !(ip != nil && ip.IsUnspecified()) && host != b.Address {
		return fmt.Errorf("boot clients on %s reach this node at %s, but the API listens on %s only: use --http-addr 0.0.0.0:%s or %s:%s",
			b.Interface, b.Address, httpAddr, port, b.Address, port)
	}
	b.DHCP.ServerIP = b.Address
	if b.NBDAddr == "" && !nbdOff {
		b.NBDAddr = net.JoinHostPort(b.Address, strconv.Itoa(nbd.DefaultPort))
	}
	b.DHCP.HTTPBase = "http://" + net.JoinHostPort(b.Address, port)
	if err := b.DHCP.Validate(); err != nil {
		return err
	}
	return b.TFTP.Validate()
}

func orPort(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// bootServices are the running boot services of a node.
type bootServices struct {
	cfg    BootConfig
	cl     *cluster.Cluster
	log    *slog.Logger
	events *bootEvents
	dhcp   *bootsvc.Handler // nil when no interface
	tftp   *bootsvc.TFTPServer
	files  *bootsvc.FileRoot // the TFTP root, also served over HTTP
	raSent prometheus.Counter
	self   string
	// xferOpen opens a blob complete on this node (transfer.Server.Open).
	xferOpen func(id string) (*os.File, int64, error)

	regMu       sync.Mutex
	registering map[string]bool // MACs with an auto-registration in flight
}

// autoRegister writes a machine the catalogue does not know, answered
// under the default group (--boot-unknown default-group), into the
// catalogue as a client of that group, named pc-<mac hex>, so an operator
// sees it and can rename or move it. In the background: the answer to the
// machine never waits for the leader. Without a leader it is retried at
// the machine's next DHCP packet.
// maxRegistering bounds the registrations in flight: a flood of forged
// MACs waits for the machine's next packet instead of piling up goroutines.
const maxRegistering = 64

func (b *bootServices) autoRegister(d bootsvc.Decision) {
	if b.cfg.DHCP.Unknown != bootsvc.UnknownDefaultGroup || d.Action == bootsvc.ActionIgnore || d.MAC == "" {
		return
	}
	if _, ok := b.cl.Catalog().Client(d.MAC); ok {
		return
	}
	b.regMu.Lock()
	if b.registering == nil {
		b.registering = map[string]bool{}
	}
	if b.registering[d.MAC] || len(b.registering) >= maxRegistering {
		b.regMu.Unlock()
		return
	}
	b.registering[d.MAC] = true
	b.regMu.Unlock()
	go func() {
		defer func() {
			b.regMu.Lock()
			delete(b.registering, d.MAC)
			b.regMu.Unlock()
		}()
		c := catalog.Client{MAC: d.MAC, Hostname: "pc-" + strings.ReplaceAll(d.MAC, ":", ""), Group: b.cfg.DHCP.DefaultGroup}
		cmd, err := catalog.NewCommand(catalog.CmdClientCreate, time.Now().Unix(), c)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		switch _, err := b.cl.Apply(ctx, cmd); {
		case err == nil:
			b.log.Info("registered an unknown machine in the default group", "mac", d.MAC, "hostname", c.Hostname, "group", c.Group)
		case errors.Is(err, catalog.ErrConflict):
			if _, ok := b.cl.Catalog().Client(d.MAC); !ok {
				b.log.Warn("could not register an unknown machine: its generated hostname is taken", "mac", d.MAC, "hostname", c.Hostname, "err", err)
			} // else another node registered it first
		default:
			b.log.Warn("could not register an unknown machine (retried at its next DHCP packet)", "mac", d.MAC, "err", err)
		}
	}()
}

func newBootServices(cfg BootConfig, cl *cluster.Cluster, xfer *transfer.Server, self string, reg prometheus.Registerer, log *slog.Logger) (*bootServices, error) {
	known := func(mac string) bool { _, ok := cl.Catalog().Client(mac); return ok }
	b := &bootServices{cfg: cfg, cl: cl, log: log, self: self, events: newBootEvents(self, known, reg), xferOpen: xfer.Open}
	b.raSent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "shoal_boot_ra_sent_total", Help: "IPv6 router advertisements sent in answer to solicitations.",
	})
	reg.MustRegister(b.raSent)
	if cfg.Interface == "" {
		return b, nil
	}
	h, err := bootsvc.NewHandler(cfg.DHCP, cl.Catalog(), log.With("service", "dhcp"))
	if err != nil {
		return nil, err
	}
	h.SetLeases(catalogLeases{cl: cl})
	h.SetObserver(func(d bootsvc.Decision) {
		b.events.dhcp(d)
		b.autoRegister(d)
	})
	b.dhcp = h
	if b.tftp, err = bootsvc.NewTFTPServer(cfg.TFTP, log.With("service", "tftp")); err != nil {
		return nil, fmt.Errorf("%w (Debian: apt-get install ipxe; or --tftp-root DIR)", err)
	}
	if b.files, err = bootsvc.OpenFileRoot(cfg.TFTP.Root); err != nil {
		b.tftp.Close()
		return nil, err
	}
	return b, nil
}

// listen opens every socket first, so a port that is taken fails the
// node's start with a clear error instead of a half-running boot service.
func (b *bootServices) listen() (func(context.Context) error, error) {
	if b.dhcp == nil {
		return func(ctx context.Context) error { <-ctx.Done(); return nil }, nil
	}
	ifname := b.cfg.Interface
	var closers []func() error
	fail := func(err error) (func(context.Context) error, error) {
		for _, c := range closers {
			c()
		}
		return nil, err
	}
	dport, pport := orPort(b.cfg.DHCPPort, bootsvc.PortDHCP), orPort(b.cfg.PXEPort, bootsvc.PortPXE)
	c67, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: dport})
	if err != nil {
		return fail(fmt.Errorf("dhcp: listen on %s port %d: %w (another DHCP server running?)", ifname, dport, err))
	}
	closers = append(closers, c67.Close)
	c4011, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: pport})
	if err != nil {
		return fail(fmt.Errorf("dhcp: listen on %s port %d: %w", ifname, pport, err))
	}
	closers = append(closers, c4011.Close)
	tport := orPort(b.cfg.TFTPPort, 69)
	ctftp, err := bootsvc.ListenTFTP(net.JoinHostPort(b.cfg.Address, strconv.Itoa(tport)))
	if err != nil {
		return fail(fmt.Errorf("%w (another TFTP server running?)", err))
	}
	return func(ctx context.Context) error {
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return b.dhcp.Serve(gctx, c67, bootsvc.PortDHCP) })
		g.Go(func() error { return b.dhcp.Serve(gctx, c4011, bootsvc.PortPXE) })
		g.Go(func() error { return b.tftp.Serve(gctx, ctftp) })
		if b.cfg.RA {
			ra := &bootsvc.RA{Interface: ifname, Log: b.log.With("service", "ra"), Sent: b.raSent.Inc}
			g.Go(func() error {
				if err := ra.Serve(gctx); err != nil {
					// No IPv6 on the interface is not fatal: boots work,
					// iPXE just waits ~16 s for an RA that never comes.
					b.log.Warn("ipv6 RA responder not running; iPXE will wait ~16 s per DHCP stage", "err", err)
				}
				return nil
			})
		}
		b.log.Info("boot services on", "interface", ifname, "address", b.cfg.Address, "dhcp_mode", b.cfg.DHCP.Mode,
			"tftp_root", b.cfg.TFTP.Root, "ra", b.cfg.RA)
		err := g.Wait()
		b.tftp.Close()
		b.files.Close()
		return err
	}, nil
}

// handler serves the boot script and boot files, and counts kernel and
// initrd fetches per MAC before handing them to the blob server.
//
// A blob this node does not hold completely yet (a node that just joined,
// or an import still spreading) is answered with a redirect to a live node
// that does; iPXE follows redirects.
func (b *bootServices) handler(base func(*http.Request) string, blobs http.Handler, elsewhere func(context.Context, string) string) http.Handler {
	hb := &bootsvc.HTTPBoot{Files: b.files, Log: b.log.With("service", "http-boot")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+bootsvc.ScriptPath, func(w http.ResponseWriter, r *http.Request) {
		src := bootsvc.ScriptSource{Catalog: b.cl.Catalog(), BaseURL: base(r), Servers: httpAddrs(b.cl), Agent: b.cfg.AgentBinary != ""}
		if b.cfg.DHCP.Unknown == bootsvc.UnknownDefaultGroup {
			src.DefaultGroup = b.cfg.DHCP.DefaultGroup
		}
		hb := *hb
		hb.Source = src
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		hb.Handler().ServeHTTP(rec, r)
		if mac, err := catalog.NormalizeMAC(r.URL.Query().Get("mac")); err == nil {
			b.events.record(mac, "script", strconv.Itoa(rec.code), remoteIP(r))
		}
	})
	mux.Handle("GET "+bootsvc.BootFilesPath+"{name...}", hb.Handler())
	mux.HandleFunc("GET "+bootsvc.BootAgentPath+"{mac}/agent.cpio", b.serveAgent)
	mux.HandleFunc("GET "+bootsvc.BootBlobPath+"{mac}/{id}", func(w http.ResponseWriter, r *http.Request) {
		mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
		id := r.PathValue("id")
		if err != nil {
			http.Error(w, "mac: want aa-bb-cc-dd-ee-ff", http.StatusBadRequest)
			return
		}
		if !transfer.ValidID(id) {
			http.Error(w, "no such blob", http.StatusNotFound)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		if f, _, err := b.xferOpen(id); err == nil {
			f.Close()
		} else if addr := elsewhere(r.Context(), id); addr != "" {
			http.Redirect(rec, r, "http://"+addr+r.URL.Path, http.StatusTemporaryRedirect)
			b.events.record(mac, b.blobKind(mac, id), strconv.Itoa(rec.code), remoteIP(r))
			return
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = bootsvc.BlobPath + id
		blobs.ServeHTTP(rec, r2)
		if r.Header.Get("Range") == "" || rec.code == http.StatusOK {
			b.events.record(mac, b.blobKind(mac, id), strconv.Itoa(rec.code), remoteIP(r))
		}
	})
	return mux
}

// blobKind names a fetched blob for the boot record.
func (b *bootServices) blobKind(mac, id string) string {
	src := bootsvc.ScriptSource{Catalog: b.cl.Catalog(), BaseURL: "http://x", DefaultGroup: b.cfg.DHCP.DefaultGroup}
	if d, err := src.Resolve(mac); err == nil && strings.HasSuffix(d.Kernel, "/"+id) {
		return "kernel"
	}
	return "initrd"
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// catalogLeases is the catalogue's lease table for the DHCP handler:
// known leases from the local replica, new ones through Raft.
type catalogLeases struct{ cl *cluster.Cluster }

func (l catalogLeases) Known(mac string) (bootsvc.Lease, bool) {
	cl, ok := l.cl.Catalog().Lease(mac)
	if !ok {
		return bootsvc.Lease{}, false
	}
	ip, err := netip.ParseAddr(cl.IP)
	if err != nil {
		return bootsvc.Lease{}, false
	}
	return bootsvc.Lease{IP: ip, Expires: time.Unix(cl.Expires, 0)}, true
}

func (l catalogLeases) Holder(ip netip.Addr) (string, bootsvc.Lease, bool) {
	cl, ok := l.cl.Catalog().LeaseByIP(ip.String())
	if !ok {
		return "", bootsvc.Lease{}, false
	}
	return cl.MAC, bootsvc.Lease{IP: ip, Expires: time.Unix(cl.Expires, 0)}, true
}

func (l catalogLeases) Release(ctx context.Context, mac string) error {
	cmd, err := catalog.NewCommand(catalog.CmdLeaseRelease, time.Now().Unix(), catalog.MACRef{MAC: mac})
	if err != nil {
		return err
	}
	_, err = l.cl.Apply(ctx, cmd)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil
	}
	return err
}

func (l catalogLeases) Acquire(ctx context.Context, mac string, want, start, end netip.Addr, d time.Duration) (bootsvc.Lease, error) {
	body := catalog.LeaseAcquire{MAC: mac, RangeStart: start.String(), RangeEnd: end.String(), Duration: int64(d / time.Second)}
	if want.IsValid() {
		body.Requested = want.String()
	}
	cmd, err := catalog.NewCommand(catalog.CmdLeaseAcquire, time.Now().Unix(), body)
	if err != nil {
		return bootsvc.Lease{}, err
	}
	idx, err := l.cl.Apply(ctx, cmd)
	switch {
	case errors.Is(err, catalog.ErrConflict):
		return bootsvc.Lease{}, fmt.Errorf("%w: %v", bootsvc.ErrPoolExhausted, err)
	case err != nil:
		return bootsvc.Lease{}, fmt.Errorf("%w: %v", bootsvc.ErrNoLeader, err)
	}
	if err := l.cl.WaitApplied(ctx, idx); err != nil {
		return bootsvc.Lease{}, fmt.Errorf("%w: lease written but not yet applied here: %v", bootsvc.ErrNoLeader, err)
	}
	got, ok := l.Known(mac)
	if !ok {
		return bootsvc.Lease{}, fmt.Errorf("lease of %s vanished after it was written", mac)
	}
	return got, nil
}

// bootBase is the HTTP base URL a boot script points at: the address the
// client reached this node on (so a client on any of its networks gets
// URLs it can use), else the boot address.
func (a *api) bootBase(r *http.Request) string {
	if r.Host != "" && !strings.ContainsAny(r.Host, "/@?#") {
		if _, err := bootsvc.ValidateBaseURL("http://" + r.Host); err == nil {
			return "http://" + r.Host
		}
	}
	return a.boot.cfg.DHCP.HTTPBase
}

func (b *bootServices) summary() string {
	if b.dhcp == nil {
		if b.cfg.NBDAddr != "" {
			return "nbd=" + b.cfg.NBDAddr
		}
		return ""
	}
	s := fmt.Sprintf("interface=%s address=%s dhcp=%s tftp=%s", b.cfg.Interface, b.cfg.Address, b.cfg.DHCP.Mode, b.cfg.TFTP.Root)
	if b.cfg.DHCP.RangeStart != "" {
		s += " range=" + b.cfg.DHCP.RangeStart + "-" + b.cfg.DHCP.RangeEnd
	}
	if b.cfg.RA {
		s += " ra=on"
	}
	if b.cfg.NBDAddr != "" {
		s += " nbd=" + b.cfg.NBDAddr
	}
	return s
}

// blobElsewhere is the HTTP address of another live node that holds blob
// id completely, or "" (asked in parallel, for at most a second).
func (a *api) blobElsewhere(ctx context.Context, id string) string {
	self := a.cl.Name()
	addrs := map[string]string{}
	for _, m := range a.cl.AliveMembers() {
		addrs[m.Name] = m.HTTPAddr()
	}
	var names []string
	for node, set := range a.holders(ctx) {
		if node != self && set[id] && addrs[node] != "" {
			names = append(names, node)
		}
	}
	if len(names) == 0 {
		return ""
	}
	sort.Strings(names)
	return addrs[names[0]]
}

// serveAgent builds the agent initrd on the fly: a newc cpio holding the
// agent binary as /init and the machine's boot config. It is uncompressed
// (the kernel takes that as well), so its length is known up front and no
// CPU goes into compressing the same binary for every boot.
func (b *bootServices) serveAgent(w http.ResponseWriter, r *http.Request) {
	mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		http.Error(w, "mac: want aa-bb-cc-dd-ee-ff", http.StatusBadRequest)
		return
	}
	code := http.StatusOK
	defer func() { b.events.record(mac, "agent", strconv.Itoa(code), remoteIP(r)) }()
	src := bootsvc.ScriptSource{Catalog: b.cl.Catalog(), BaseURL: "http://agent.invalid", Servers: httpAddrs(b.cl)}
	if b.cfg.DHCP.Unknown == bootsvc.UnknownDefaultGroup {
		src.DefaultGroup = b.cfg.DHCP.DefaultGroup
	}
	d, err := src.Resolve(mac)
	if err != nil {
		code = http.StatusNotFound
		http.Error(w, "no boot assignment for "+mac+": "+err.Error(), code)
		return
	}
	if b.cfg.AgentBinary == "" {
		code = http.StatusNotFound
		http.Error(w, "this node serves no agent initrd", code)
		return
	}
	bin, err := os.Open(b.cfg.AgentBinary)
	if err != nil {
		code = http.StatusInternalServerError
		b.log.Error("agent initrd: agent binary", "err", err)
		http.Error(w, "agent binary unavailable, see the server log", code)
		return
	}
	defer bin.Close()
	st, err := bin.Stat()
	if err != nil {
		code = http.StatusInternalServerError
		http.Error(w, "agent binary unavailable", code)
		return
	}
	ac := bootsvc.AgentConfigOf(d)
	for _, m := range b.cl.AliveMembers() {
		if a := m.Meta[MetaNBD]; a != "" {
			ac.NBD = append(ac.NBD, a)
		}
	}
	sort.Strings(ac.NBD)
	cfg, _ := json.MarshalIndent(ac, "", "  ")
	cfg = append(cfg, '\n')
	files := []bootsvc.CPIOFile{
		{Name: "etc", Mode: bootsvc.ModeDir | 0o755},
		{Name: "etc/shoal", Mode: bootsvc.ModeDir | 0o755},
		{Name: "etc/shoal/boot.json", Mode: bootsvc.ModeFile | 0o644, Size: int64(len(cfg)), Body: bytes.NewReader(cfg)},
		{Name: "init", Mode: bootsvc.ModeFile | 0o755, Size: st.Size(), Body: bin},
	}
	w.Header().Set("Content-Type", "application/x-cpio")
	w.Header().Set("Content-Length", strconv.FormatInt(bootsvc.CPIOSize(files), 10))
	w.Header().Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	if err := bootsvc.WriteCPIO(w, files); err != nil {
		b.log.Warn("agent initrd: send", "mac", mac, "err", err)
	}
}

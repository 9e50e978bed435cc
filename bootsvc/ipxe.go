package bootsvc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// HTTP paths on every node. Blobs are served by the transfer package.
const (
	ScriptPath    = "/v1/boot/ipxe"   // ?mac=aa:bb:cc:dd:ee:ff -> iPXE script
	BootFilesPath = "/v1/boot/files/" // + name: the TFTP root over HTTP (UEFI HTTP boot)
	BlobPath      = "/v1/blobs/"      // + blob id: kernel, initrd, image bytes
	// BootBlobPath + <mac with dashes> + "/" + blob id: a blob fetched by a
	// booting machine, so the node can record the fetch against the MAC.
	BootBlobPath = "/v1/boot/blobs/"
)

// BootAgentPath + <mac with dashes> + "/agent.cpio": the agent initrd.
const BootAgentPath = "/v1/boot/agent/"

// BootAgentURLPath is the path of mac's agent initrd.
func BootAgentURLPath(mac string) string {
	return BootAgentPath + strings.ReplaceAll(mac, ":", "-") + "/agent.cpio"
}

// BootBlobURLPath is the path a booting mac fetches blob id from.
func BootBlobURLPath(mac, id string) string {
	return BootBlobPath + strings.ReplaceAll(mac, ":", "-") + "/" + id
}

// maxCmdline is COMMAND_LINE_SIZE on x86 and arm64. The kernel silently
// truncates a longer line, dropping whatever came last (the client's own
// arguments), so a longer one is an error here instead.
const maxCmdline = 2048

// ScriptData is everything a boot script says, resolved from the catalogue.
type ScriptData struct {
	BaseURL  string // this node, e.g. "http://10.77.0.1:7480"; every URL points here
	MAC      string // canonical
	Hostname string // "" when an unregistered machine boots the default group
	Group    string
	BootMode catalog.BootMode
	// Image and Version name what the group boots (not rendered; the
	// agent initrd's config carries them).
	Image, Version string
	Kernel         string   // path below BaseURL
	Initrds        []string // paths below BaseURL, in load order; names (basenames) must differ
	// Servers lists the HTTP addresses (host:port) of the nodes, so the
	// agent can reach any of them once this one is gone.
	Servers []string
	// Kernel arguments, most general first: the image's, the group's, the
	// client's. The kernel (and most init systems) let the last occurrence
	// of a parameter win, so a client can override its group and a group
	// its image.
	ImageArgs, GroupArgs, ClientArgs string
}

// RenderScript writes the iPXE script that boots s. Every value is
// validated first and a value that could inject iPXE commands is an error
// (wrapping ErrUnsafe): nothing is escaped. Nothing is written on error.
//
// The kernel line follows the reference setup (testenv/http/*.ipxe):
// "initrd=<name>" for each initrd, which the EFI stub of the 2019 iPXE in
// Debian needs to find them, then the shoal.* parameters for the agent,
// then the image, group and client arguments.
func RenderScript(w io.Writer, s ScriptData) error {
	if err := s.validate(); err != nil {
		return err
	}
	cmdline := s.cmdline()
	if len(cmdline) > maxCmdline {
		return fmt.Errorf("kernel command line is %d bytes, the kernel keeps %d", len(cmdline), maxCmdline)
	}
	var b bytes.Buffer
	b.WriteString("#!ipxe\n")
	fmt.Fprintf(&b, "echo shoal: booting %s group %s from %s\n", s.who(), s.Group, s.BaseURL)
	fmt.Fprintf(&b, "kernel %s%s %s\n", s.BaseURL, s.Kernel, cmdline)
	for _, p := range s.Initrds {
		fmt.Fprintf(&b, "initrd %s%s\n", s.BaseURL, p)
	}
	b.WriteString("boot\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (s ScriptData) who() string {
	if s.Hostname != "" {
		return s.Hostname + " " + s.MAC
	}
	return s.MAC
}

// cmdline joins the generated parameters and the argument strings. The
// shoal.* names are the contract with the agent's /init.
func (s ScriptData) cmdline() string {
	var words []string
	for _, p := range s.Initrds {
		words = append(words, "initrd="+path.Base(p))
	}
	words = append(words, "shoal.mac="+s.MAC, "shoal.group="+s.Group, "shoal.mode="+string(s.BootMode))
	if s.Hostname != "" {
		words = append(words, "shoal.hostname="+s.Hostname)
	}
	if len(s.Servers) > 0 {
		words = append(words, "shoal.servers="+strings.Join(s.Servers, ","))
	}
	for _, a := range []string{s.ImageArgs, s.GroupArgs, s.ClientArgs} {
		words = append(words, strings.Fields(a)...)
	}
	return strings.Join(words, " ")
}

func (s ScriptData) validate() error {
	base, err := ValidateBaseURL(s.BaseURL)
	if err != nil {
		return err
	}
	if base != s.BaseURL {
		return fmt.Errorf("base URL %q must not end in '/'", shown(s.BaseURL))
	}
	if mac, err := catalog.NormalizeMAC(s.MAC); err != nil || mac != s.MAC {
		return fmt.Errorf("mac %q: want canonical aa:bb:cc:dd:ee:ff: %w", shown(s.MAC), ErrUnsafe)
	}
	if s.Hostname != "" {
		if err := ValidateHostname(s.Hostname); err != nil {
			return err
		}
	}
	if !nameRE.MatchString(s.Group) {
		return fmt.Errorf("group %q: %w", shown(s.Group), ErrUnsafe)
	}
	if !validBootMode(s.BootMode) {
		return fmt.Errorf("boot mode %q: %w", shown(string(s.BootMode)), ErrUnsafe)
	}
	if err := s.validateFiles(); err != nil {
		return err
	}
	for _, a := range s.Servers {
		if err := validateHostPort(a); err != nil {
			return err
		}
	}
	return s.validateArgs()
}

func validBootMode(m catalog.BootMode) bool {
	return m == catalog.BootDisklessRAM || m == catalog.BootDisklessNBD || m == catalog.BootDisk
}

func (s ScriptData) validateFiles() error {
	if err := validateURLPath("kernel", s.Kernel); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range s.Initrds {
		if err := validateURLPath("initrd", p); err != nil {
			return err
		}
		name := path.Base(p)
		if seen[name] {
			return fmt.Errorf("initrd name %q appears twice; the EFI stub could not tell them apart", name)
		}
		seen[name] = true
	}
	return nil
}

// validateURLPath: an absolute, clean path of safe characters with a
// non-empty last element (the name iPXE gives the downloaded image).
func validateURLPath(what, p string) error {
	if !strings.HasPrefix(p, "/") || !safeToken(p) || path.Clean(p) != p || strings.Contains(p, "..") || p == "/" ||
		strings.ContainsAny(p, ":,[]") {
		return fmt.Errorf("%s path %q: want a clean absolute path of letters, digits, '.', '_', '-': %w", what, shown(p), ErrUnsafe)
	}
	return nil
}

func (s ScriptData) validateArgs() error {
	for _, a := range [][2]string{{"image", s.ImageArgs}, {"group", s.GroupArgs}, {"client", s.ClientArgs}} {
		if err := catalog.ValidateArgs(a[1]); err != nil {
			return fmt.Errorf("%s kernel args: %w (%w)", a[0], err, ErrUnsafe)
		}
	}
	return nil
}

// Notice is a script for a machine that cannot boot yet (unknown MAC, group
// without an image): it explains why on the console, waits and retries.
type Notice struct {
	Lines []string      // each printed after "shoal: "; validated like kernel args
	Retry time.Duration // wait before retrying, at least one second
}

// RenderNotice writes a Notice script. The retry is "reboot", which starts
// the whole PXE chain again and so picks up a registration made meanwhile;
// iPXE builds without the reboot command fall through to "exit", which
// hands control back to the firmware's boot order. Chaining the script URL
// again instead would nest one script per attempt in iPXE's memory.
func RenderNotice(w io.Writer, n Notice) error {
	secs := int(n.Retry / time.Second)
	if secs < 1 {
		return fmt.Errorf("notice retry %s: want at least 1s", n.Retry)
	}
	var b bytes.Buffer
	b.WriteString("#!ipxe\n")
	for _, l := range n.Lines {
		if err := catalog.ValidateArgs(l); err != nil {
			return fmt.Errorf("notice line: %w (%w)", err, ErrUnsafe)
		}
		fmt.Fprintf(&b, "echo shoal: %s\n", l)
	}
	fmt.Fprintf(&b, "echo shoal: trying again in %d seconds\n", secs)
	fmt.Fprintf(&b, "sleep %d ||\n", secs)
	b.WriteString("reboot ||\nexit\n")
	_, err := w.Write(b.Bytes())
	return err
}

// UnknownClientNotice explains how to register an unknown machine. mac
// must be canonical; anything else is replaced, never echoed.
func UnknownClientNotice(mac string, retry time.Duration) Notice {
	if m, err := catalog.NormalizeMAC(mac); err != nil || m != mac {
		mac = "(unreadable MAC)"
	}
	return Notice{Retry: retry, Lines: []string{
		"this machine, MAC " + mac + ", is not registered in the catalogue.",
		// No "--flags" here: a line is echo's argv, and an iPXE whose
		// getopt permutes would take them as options to echo.
		"to boot it, register it with shoal client add " + mac + " and a hostname and group.",
	}}
}

// Resolution errors.
var (
	ErrUnknownClient = errors.New("client is not in the catalogue")
	ErrNotBootable   = errors.New("not bootable")
)

// ScriptSource resolves a MAC to ScriptData from the catalogue.
type ScriptSource struct {
	Catalog Catalog
	BaseURL string // this node, without a trailing slash
	// DefaultGroup boots unknown MACs; "" leaves them ErrUnknownClient.
	DefaultGroup string
	// Servers returns the HTTP addresses of the live nodes; may be nil.
	Servers func() []string
	// ExtraInitrds are appended after the image's initrd.
	ExtraInitrds []string
	// Agent appends the per-client agent initrd (BootAgentURLPath) for
	// the diskless boot modes: the kernel unpacks it after the image's
	// initrd, so its /init (the shoal binary) wins while the image's
	// kernel modules stay usable.
	Agent bool
}

// Resolve finds the client (or the default group), its group, the image
// version the group boots (pinned, else the image's current one) and the
// kernel and initrd blobs. The result is validated by RenderScript.
func (src ScriptSource) Resolve(mac string) (ScriptData, error) {
	canon, err := catalog.NormalizeMAC(mac)
	if err != nil {
		return ScriptData{}, err
	}
	d := ScriptData{BaseURL: src.BaseURL, MAC: canon, Group: src.DefaultGroup}
	if cl, ok := src.Catalog.Client(canon); ok {
		d.Hostname, d.Group, d.ClientArgs = cl.Hostname, cl.Group, cl.KernelArgs
	} else if src.DefaultGroup == "" {
		return d, ErrUnknownClient
	}
	v, err := src.version(&d)
	if err != nil {
		return d, err
	}
	if v.KernelBlob == "" {
		return d, fmt.Errorf("%w: image version %s has no kernel", ErrNotBootable, v.ID)
	}
	d.Kernel, d.ImageArgs = BootBlobURLPath(canon, v.KernelBlob), v.Cmdline
	if v.InitrdBlob != "" {
		d.Initrds = append(d.Initrds, BootBlobURLPath(canon, v.InitrdBlob))
	}
	d.Initrds = append(d.Initrds, src.ExtraInitrds...)
	if src.Agent && (d.BootMode == catalog.BootDisklessRAM || d.BootMode == catalog.BootDisklessNBD) {
		d.Initrds = append(d.Initrds, BootAgentURLPath(canon))
	}
	if src.Servers != nil {
		d.Servers = src.Servers()
	}
	return d, nil
}

// version fills the group fields of d and returns the version to boot.
func (src ScriptSource) version(d *ScriptData) (catalog.ImageVersion, error) {
	g, ok := src.Catalog.Group(d.Group)
	if !ok {
		return catalog.ImageVersion{}, fmt.Errorf("%w: group %q does not exist", ErrNotBootable, d.Group)
	}
	d.BootMode, d.GroupArgs = g.BootMode, g.KernelArgs
	if g.Image == "" {
		return catalog.ImageVersion{}, fmt.Errorf("%w: group %s has no image", ErrNotBootable, g.Name)
	}
	im, ok := src.Catalog.Image(g.Image)
	if !ok {
		return catalog.ImageVersion{}, fmt.Errorf("%w: image %s does not exist", ErrNotBootable, g.Image)
	}
	id := g.Version
	if id == "" {
		id = im.Current
	}
	d.Image, d.Version = im.Name, id
	for _, v := range im.Versions {
		if v.ID == id {
			return v, nil
		}
	}
	return catalog.ImageVersion{}, fmt.Errorf("%w: image %s has no version %q", ErrNotBootable, im.Name, id)
}

// AgentConfig is /etc/shoal/boot.json in the agent initrd: who this
// machine is and where the servers are, as the node saw it when the
// machine booted. The agent still asks a server for the current
// assignment; this is its fallback and its list of servers to try.
type AgentConfig struct {
	MAC      string           `json:"mac"`
	Hostname string           `json:"hostname,omitempty"`
	Group    string           `json:"group"`
	Mode     catalog.BootMode `json:"mode"`
	Image    string           `json:"image"`
	Version  string           `json:"version"`
	Servers  []string         `json:"servers"` // host:port of every live node's API
	// NBD lists host:port of every live node's NBD export (diskless-nbd);
	// empty means port 10809 on each server's host.
	NBD  []string `json:"nbd,omitempty"`
	Args string   `json:"args,omitempty"`
}

// AgentConfigOf turns resolved script data into the agent's config.
func AgentConfigOf(d ScriptData) AgentConfig {
	return AgentConfig{MAC: d.MAC, Hostname: d.Hostname, Group: d.Group, Mode: d.BootMode,
		Image: d.Image, Version: d.Version, Servers: d.Servers,
		Args: strings.Join(strings.Fields(d.ImageArgs+" "+d.GroupArgs+" "+d.ClientArgs), " ")}
}

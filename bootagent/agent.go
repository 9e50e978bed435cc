//go:build linux

// Package bootagent is the shoal agent as a diskless client's /init: it
// brings the machine from "kernel started" to "the image's init runs on a
// read-only image with a RAM overlay", fetching the image from the swarm
// (servers and the machines booting beside it) on the way.
//
//	mount /proc /sys /dev /run → load NIC, squashfs, overlay, loop modules
//	→ DHCP on the boot NIC → ask any server for the assignment → fetch the
//	image into RAM, every piece verified → loop-mount it read-only → tmpfs
//	overlay → hostname and per-client settings → switch_root to /sbin/init
//
// A seeder child keeps serving the image's pieces from RAM to the other
// machines for a while after the switch. Every failure is printed on the
// console and retried (other servers first); nothing waits silently.
package bootagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/initsys"
	"github.com/shoal-project/shoal/transfer"
)

// Paths in the initramfs. The image lives on its own tmpfs at /shoal,
// which stays behind in the old root after switch_root (the seeder child
// keeps using it); the overlay state goes below /run, which moves into the
// new root, so the OS sees the pristine image at /run/shoal/lower.
const (
	configPath = "/etc/shoal/boot.json"
	imageDir   = "/shoal"
	imagePath  = "/shoal/image"
	newRoot    = "/newroot"
	stateDir   = "/run/shoal"
	agentPort  = "7483"
)

// Modules the agent needs; built-in ones are skipped, missing ones logged.
var modules = []string{"virtio_pci", "virtio_net", "e1000", "e1000e", "squashfs", "overlay", "loop"}

// Config is what the agent knows at start: boot.json from the agent
// initrd, overridden by shoal.* words on the kernel command line.
type Config struct {
	bootsvc.AgentConfig
	Init     string        // the image's init, default /sbin/init
	SeedFor  time.Duration // how long the seeder child serves after the switch
	Retry    time.Duration // pause between failed attempts
	Attempts int           // per step; then the machine reboots and PXE starts over
}

// LoadConfig reads boot.json and the kernel command line.
func LoadConfig() (Config, error) {
	c := Config{Init: "/sbin/init", SeedFor: 2 * time.Minute, Retry: 3 * time.Second, Attempts: 20}
	if b, err := os.ReadFile(configPath); err == nil {
		if err := json.Unmarshal(b, &c.AgentConfig); err != nil {
			return c, fmt.Errorf("%s: %w", configPath, err)
		}
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	applyCmdline(&c, string(cmdline))
	if c.MAC == "" {
		return c, errors.New("no MAC: neither " + configPath + " nor shoal.mac= on the kernel command line")
	}
	mac, err := catalog.NormalizeMAC(c.MAC)
	if err != nil {
		return c, fmt.Errorf("MAC %q: %w", c.MAC, err)
	}
	c.MAC = mac
	if len(c.Servers) == 0 {
		return c, errors.New("no servers: neither " + configPath + " nor shoal.servers= on the kernel command line")
	}
	return c, nil
}

func applyCmdline(c *Config, cmdline string) {
	for _, w := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(w, "=")
		switch k {
		case "shoal.mac":
			c.MAC = v
		case "shoal.hostname":
			c.Hostname = v
		case "shoal.servers":
			c.Servers = strings.Split(v, ",")
		case "shoal.init":
			c.Init = v
		case "shoal.mode":
			c.Mode = catalog.BootMode(v)
		case "shoal.seed-for":
			if d, err := time.ParseDuration(v); err == nil {
				c.SeedFor = d
			}
		}
	}
}

// Run does the whole boot and ends in exec of the image's init; it
// returns only with an error after every retry failed.
func Run(ctx context.Context) error {
	if err := initsys.MountBasics(); err != nil {
		say("mounting /proc /sys /dev /run failed: %v", err)
	}
	if err := initsys.AttachConsole(); err != nil {
		say("console as stdout/stderr: %v", err)
	}
	log := initsys.ConsoleLogger(slog.LevelInfo).With("agent", "shoal")
	c, err := LoadConfig()
	if err != nil {
		return err
	}
	say("starting: mac %s host %s group %s mode %s, servers %s", c.MAC, c.Hostname, c.Group, c.Mode, strings.Join(c.Servers, ","))
	if err := initsys.LoadModules("/", modules...); err != nil {
		say("some kernel modules were not loaded (fine unless the network or the mounts fail below): %v", err)
	}
	lease, err := retry(ctx, c, "network (DHCP)", func(ctx context.Context) (initsys.Lease, error) {
		return initsys.NetUp(ctx, "", c.Hostname, log)
	})
	if err != nil {
		return err
	}
	say("network: %s on %s, from DHCP server %s", lease.IP, lease.Interface, lease.ServerID)
	if c.Mode == catalog.BootDisklessNBD {
		return runNBD(ctx, c)
	}
	if err := mountTmpfs(imageDir); err != nil {
		return err
	}
	rep, err := retry(ctx, c, "image fetch", func(ctx context.Context) (transfer.SyncReport, error) {
		return fetch(ctx, c, lease.IP, log)
	})
	if err != nil {
		return err
	}
	say("image %s@%.12s verified in RAM: %d MiB in %.1fs, %d MiB from peers %s",
		rep.Image, rep.Version, rep.Size>>20, rep.Seconds, rep.Fetched>>20, strings.Join(rep.PeersUsed, ","))
	report(ctx, c, rep)
	startSeeder(c, rep, lease.IP)
	if err := mountRoot(c, rep); err != nil {
		return err
	}
	say("switching to %s on the image (overlay: tmpfs over read-only %s)", c.Init, rep.Image)
	return initsys.SwitchRoot(newRoot, c.Init, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=linux"})
}

// retry runs f until it succeeds, printing every failure; after Attempts
// failures it gives up (the caller reboots, so PXE starts over and maybe
// another node answers).
func retry[T any](ctx context.Context, c Config, what string, f func(context.Context) (T, error)) (T, error) {
	var zero T
	for i := 1; ; i++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		v, err := f(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		say("%s failed (attempt %d of %d): %v", what, i, c.Attempts, err)
		if i >= c.Attempts || ctx.Err() != nil {
			return zero, fmt.Errorf("%s: giving up after %d attempts: %w", what, i, err)
		}
		time.Sleep(c.Retry)
	}
}

// fetch syncs the assigned image into RAM from the servers and peers,
// trying the servers in a rotating order so a dead one is not always first.
func fetch(ctx context.Context, c Config, ip net.IP, log *slog.Logger) (transfer.SyncReport, error) {
	var urls []string
	for _, s := range c.Servers {
		if !strings.Contains(s, "://") {
			s = "http://" + s
		}
		urls = append(urls, s)
	}
	last := time.Now()
	return transfer.Sync(ctx, transfer.SyncConfig{
		Servers:    urls,
		MAC:        c.MAC,
		Target:     imagePath,
		ListenAddr: net.JoinHostPort(ip.String(), agentPort),
		Logger:     log.With("subsystem", "sync"),
		Progress: func(p transfer.SyncProgress) {
			if time.Since(last) < 2*time.Second {
				return
			}
			last = time.Now()
			say("%s: %d/%d MiB, %d peers", p.Phase, p.Done>>20, p.Total>>20, p.Peers)
		},
	})
}

// startSeeder leaves a child behind that serves the pieces from RAM for
// SeedFor: machines that boot a little later still find this one in the
// swarm. It is the same binary (/init, via /proc/self/exe), so nothing
// more needs to be in the initramfs.
func startSeeder(c Config, rep transfer.SyncReport, ip net.IP) {
	if c.SeedFor <= 0 {
		return
	}
	args := []string{"agent", "sync", "--client", c.MAC, "--target", imagePath, "--seed", "--seed-for", c.SeedFor.String(),
		"--listen", net.JoinHostPort(ip.String(), agentPort), "--log-level", "warn", "--json"}
	for _, s := range c.Servers {
		args = append(args, "--server", "http://"+strings.TrimPrefix(s, "http://"))
	}
	cmd := exec.Command("/proc/self/exe", args...)
	cmd.Stdout, cmd.Stderr = initsys.ConsoleWriter(), initsys.ConsoleWriter()
	if err := cmd.Start(); err != nil {
		say("seeder not started (boot continues): %v", err)
		return
	}
	say("seeding %s to other machines for %s (pid %d)", rep.Image, c.SeedFor, cmd.Process.Pid)
}

// nbdDevice is the block device the NBD root is attached to.
const nbdDevice = "/dev/nbd0"

// runNBD is diskless-nbd: the image stays on the servers and is read over
// NBD as needed. A child process (`shoal agent nbd-attach`) holds the
// connection for the life of the machine (the kernel's ioctl interface
// needs a process blocked in NBD_DO_IT), moving to the next server when
// one dies.
func runNBD(ctx context.Context, c Config) error {
	if err := initsys.LoadModules("/", "nbd"); err != nil {
		return fmt.Errorf("nbd module: %w", err)
	}
	export := c.Image
	if c.Version != "" {
		export += "@" + c.Version
	}
	servers := c.NBD // the nodes' NBD addresses, from the boot config
	if len(servers) == 0 {
		for _, s := range c.Servers {
			host, _, err := net.SplitHostPort(strings.TrimPrefix(s, "http://"))
			if err != nil {
				host = s
			}
			servers = append(servers, net.JoinHostPort(host, "10809"))
		}
	}
	cmd := exec.Command("/proc/self/exe", "agent", "nbd-attach", "--device", nbdDevice, "--export", export,
		"--server", strings.Join(servers, ","))
	cmd.Stdout, cmd.Stderr = initsys.ConsoleWriter(), initsys.ConsoleWriter()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nbd attach: %w", err)
	}
	say("nbd: attaching %s from %s (pid %d)", export, strings.Join(servers, ","), cmd.Process.Pid)
	if err := waitBlockDevice(ctx, nbdDevice, 60*time.Second); err != nil {
		return err
	}
	fstype, err := fsType(nbdDevice)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if _, err := initsys.MountOverlayRoot(nbdDevice, fstype, newRoot, stateDir, ""); err != nil {
		return err
	}
	version := c.Version
	if err := writeSettings(c, c.Image, version); err != nil {
		return err
	}
	say("switching to %s on %s over NBD (overlay: tmpfs over read-only %s)", c.Init, export, nbdDevice)
	return initsys.SwitchRoot(newRoot, c.Init, []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "TERM=linux"})
}

// waitBlockDevice waits until dev has a non-zero size in /sys/block.
func waitBlockDevice(ctx context.Context, dev string, timeout time.Duration) error {
	sizeFile := filepath.Join("/sys/block", filepath.Base(dev), "size")
	deadline := time.Now().Add(timeout)
	for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
		if b, err := os.ReadFile(sizeFile); err == nil && strings.TrimSpace(string(b)) != "0" {
			return nil
		}
		if i > 0 && i%50 == 0 {
			say("nbd: still waiting for %s", dev)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("nbd: %s not attached within %s", dev, timeout)
}

// mountRoot loop-mounts the image read-only under a tmpfs overlay on
// /newroot and writes the per-client settings into the overlay.
func mountRoot(c Config, rep transfer.SyncReport) error {
	fstype, err := fsType(imagePath)
	if err != nil {
		return err
	}
	loop, err := initsys.LoopAttach(imagePath)
	if err != nil {
		return err
	}
	defer loop.Close()
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if _, err := initsys.MountOverlayRoot(loop.Path, fstype, newRoot, stateDir, ""); err != nil {
		return err
	}
	return writeSettings(c, rep.Image, rep.Version)
}

// writeSettings puts the per-client settings into the overlay.
func writeSettings(c Config, image, version string) error {
	host := c.Hostname
	if host == "" {
		host = "shoal-" + strings.ReplaceAll(c.MAC[9:], ":", "")
	}
	files := map[string]string{
		"etc/hostname":        host + "\n",
		"etc/shoal/image":     image + "@" + version + "\n",
		"etc/shoal/boot.json": mustJSON(c.AgentConfig),
	}
	for name, body := range files {
		p := filepath.Join(newRoot, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("per-client settings: %w", err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return fmt.Errorf("per-client settings: %w", err)
		}
	}
	return nil
}

func mustJSON(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b) + "\n"
}

// fsType recognises the image by its superblock: squashfs ("hsqs" at 0)
// or ext2/3/4 (0xEF53 at 1080).
func fsType(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b := make([]byte, 1082)
	if _, err := f.ReadAt(b, 0); err != nil {
		return "", fmt.Errorf("image %s: %w", path, err)
	}
	switch {
	case string(b[:4]) == "hsqs":
		return "squashfs", nil
	case b[1080] == 0x53 && b[1081] == 0xef:
		return "ext4", nil
	}
	return "", fmt.Errorf("image %s is neither squashfs nor ext2/3/4: a raw disk image cannot be the root of a diskless boot", path)
}

func mountTmpfs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	return nil
}

// Main is /init: Run, and if it fails, say so, wait so the message can be
// read, and reboot (PXE starts over, maybe from another node). PID 1 must
// never exit: the kernel would panic.
func Main() {
	defer func() {
		if p := recover(); p != nil {
			say("boot failed: internal error: %v", p)
			say("rebooting in 10 seconds to start over")
			time.Sleep(10 * time.Second)
			initsys.Reboot()
			for {
				time.Sleep(time.Hour)
			}
		}
	}()
	err := Run(context.Background())
	say("boot failed: %v", err)
	say("rebooting in 10 seconds to start over")
	time.Sleep(10 * time.Second)
	if err := initsys.Reboot(); err != nil {
		say("reboot: %v", err)
	}
	for {
		time.Sleep(time.Hour)
	}
}

// say prints a console line with the seconds since the kernel started, so
// a boot's console is its own timeline.
func say(format string, args ...any) {
	up := ""
	if b, err := os.ReadFile("/proc/uptime"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			up = "[" + f[0] + "s] "
		}
	}
	initsys.Consolef(up+format, args...)
}

// report tells the server that resolved the image how the fetch went (the
// node counts which peers were servers and which were other machines). A
// failure only costs the statistics.
func report(ctx context.Context, c Config, rep transfer.SyncReport) {
	body, _ := json.Marshal(map[string]any{"image": rep.Image, "version": rep.Version, "seconds": rep.Seconds,
		"bytes_fetched": rep.Fetched, "peers_used": rep.PeersUsed})
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(rep.Server, "/")+"/v1/boot/report/"+c.MAC, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		say("fetch report to %s not sent: %v", rep.Server, err)
		return
	}
	resp.Body.Close()
}

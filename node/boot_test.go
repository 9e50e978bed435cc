package node_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/node"
	"github.com/shoal-project/shoal/node/nodetest"
)

// uploadBlob posts data as a blob and returns its catalogue description.
func uploadBlob(t *testing.T, base, data string) catalog.Blob {
	t.Helper()
	code, body := do(t, "POST", base+"/v1/blobs", data)
	var b catalog.Blob
	if code != 201 || json.Unmarshal([]byte(body), &b) != nil {
		t.Fatalf("upload: %d %s", code, body)
	}
	return b
}

// TestHTTPBoot: the boot script of a registered client points at this
// node's per-MAC blob URLs, those serve the blobs, and every step shows up
// in the client's last boot and in /metrics.
func TestHTTPBoot(t *testing.T) {
	base := startNode(t)
	root := uploadBlob(t, base, strings.Repeat("root image ", 1000))
	kernel := uploadBlob(t, base, "KERNEL-BYTES")
	initrd := uploadBlob(t, base, "INITRD-BYTES")
	ver, _ := json.Marshal(map[string]any{
		"id": root.ID, "size": root.Size, "sha256": root.ID, "format": "raw", "piece_length": root.PieceLength,
		"kernel_blob": kernel.ID, "initrd_blob": initrd.ID, "cmdline": "console=ttyS0",
		"blobs": []catalog.Blob{root, kernel, initrd}, "activate": true,
	})
	for _, s := range []struct{ method, path, body string }{
		{"POST", "/v1/images/os/versions", string(ver)},
		{"POST", "/v1/groups", `{"name":"lab","image":"os","kernel_args":"quiet"}`},
		{"POST", "/v1/clients", `{"mac":"52:54:00:77:00:01","hostname":"vm1","group":"lab"}`},
	} {
		if code, body := do(t, s.method, base+s.path, s.body); code != 201 {
			t.Fatalf("%s %s: %d %s", s.method, s.path, code, body)
		}
	}

	code, script := do(t, "GET", base+"/v1/boot/ipxe?mac=52:54:00:77:00:01", "")
	kurl := base + "/v1/boot/blobs/52-54-00-77-00-01/" + kernel.ID
	iurl := base + "/v1/boot/blobs/52-54-00-77-00-01/" + initrd.ID
	for _, want := range []string{"#!ipxe", "kernel " + kurl + " initrd=" + initrd.ID, "shoal.hostname=vm1", "console=ttyS0 quiet", "initrd " + iurl, "boot"} {
		if code != 200 || !strings.Contains(script, want) {
			t.Fatalf("script: %d %q lacks %q", code, script, want)
		}
	}
	// The agent initrd: the node's own binary as /init plus the boot config.
	aurl := base + "/v1/boot/agent/52-54-00-77-00-01/agent.cpio"
	if !strings.Contains(script, "initrd "+aurl) || !strings.Contains(script, "initrd=agent.cpio") {
		t.Errorf("script lacks the agent initrd:\n%s", script)
	}
	checkAgentCPIO(t, aurl, "vm1", root.ID)
	for url, want := range map[string]string{kurl: "KERNEL-BYTES", iurl: "INITRD-BYTES"} {
		if code, body := do(t, "GET", url, ""); code != 200 || body != want {
			t.Errorf("GET %s: %d %q", url, code, body)
		}
	}
	if code, _ := do(t, "GET", base+"/v1/boot/blobs/52-54-00-77-00-01/"+strings.Repeat("0", 64), ""); code != 404 {
		t.Errorf("unknown blob: %d, want 404", code)
	}
	if code, _ := do(t, "GET", base+"/v1/boot/blobs/52-54-00-77-00-01/garbage", ""); code != 404 {
		t.Errorf("malformed blob id: %d, want 404", code)
	}
	if code, _ := do(t, "GET", base+"/v1/boot/blobs/not-a-mac/"+kernel.ID, ""); code != 400 {
		t.Errorf("bad mac: %d, want 400", code)
	}
	// An unregistered machine gets a notice, not a kernel.
	if code, body := do(t, "GET", base+"/v1/boot/ipxe?mac=52:54:00:77:00:09", ""); code != 200 || !strings.Contains(body, "not registered") || strings.Contains(body, "kernel") {
		t.Errorf("unknown machine: %d %q", code, body)
	}

	code, body := do(t, "GET", base+"/v1/clients/52:54:00:77:00:01", "")
	var v node.ClientView
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil || len(v.LastBoot) != 1 {
		t.Fatalf("client view: %d %s", code, body)
	}
	rec := v.LastBoot[0]
	if rec.Node != "t1" || rec.LastOf == "" {
		t.Errorf("boot record %+v", rec)
	}
	for _, step := range []string{"script", "kernel", "initrd", "agent"} {
		if rec.Steps[step].IsZero() {
			t.Errorf("boot record lacks step %s: %+v", step, rec.Steps)
		}
	}
	_, metrics := do(t, "GET", base+"/metrics", "")
	for _, want := range []string{
		`shoal_boot_events_total{event="script",mac="52:54:00:77:00:01",result="200"} 1`,
		`shoal_boot_events_total{event="kernel",mac="52:54:00:77:00:01",result="200"} 1`,
		`shoal_boot_events_total{event="initrd",mac="52:54:00:77:00:01",result="404"} 1`,
		`shoal_boot_events_total{event="initrd",mac="52:54:00:77:00:01",result="200"} 1`,
		// an unregistered MAC gets no series of its own
		`shoal_boot_events_total{event="script",mac="",result="200"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// An agent's fetch report: its own node's address counts as a server,
	// anything else as another machine.
	host := strings.TrimPrefix(strings.Split(base, ":")[1], "//")
	code, body = do(t, "POST", base+"/v1/boot/report/52:54:00:77:00:01",
		`{"image":"os","version":"`+root.ID+`","seconds":1.5,"bytes_fetched":1048576,"peers_used":["`+host+`:7482","10.9.9.9:7483","10.9.9.8:7483"]}`)
	if code != 200 || !strings.Contains(body, `"clients": 2`) || !strings.Contains(body, `"servers": 1`) {
		t.Errorf("fetch report: %d %s", code, body)
	}
	if code, _ := do(t, "POST", base+"/v1/boot/report/52:54:00:77:00:01", `{"peers_used":"x"}`); code != 400 {
		t.Errorf("malformed fetch report: %d, want 400", code)
	}
	_, metrics = do(t, "GET", base+"/metrics", "")
	if !strings.Contains(metrics, `shoal_boot_fetch_peers_total{kind="client"} 2`) {
		t.Errorf("metrics lack the reported client peers")
	}
	if code, body := do(t, "GET", base+"/v1/leases", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Errorf("leases: %d %s", code, body)
	}
}

func TestBootConfigValidation(t *testing.T) {
	cfg := node.DefaultConfig()
	cfg.Boot.Interface = "no-such-if0"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "no-such-if0") {
		t.Errorf("missing interface: %v", err)
	}
	cfg.Boot.Interface = "lo"
	cfg.Cluster.HTTPAddr = "127.0.0.1:7480"
	cfg.Boot.Address = "127.0.0.2"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "not on interface lo") {
		t.Errorf("address not on interface: %v", err)
	}
	cfg.Boot.Address = ""
	cfg.Cluster.HTTPAddr = "127.0.0.3:7480"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--http-addr 0.0.0.0:7480") {
		t.Errorf("unreachable API: %v", err)
	}
	// With an interface, NBD defaults to the boot address, unless "off".
	for nbdAddr, want := range map[string]string{"": "127.0.0.1:10809", "off": "", "127.0.0.1:10900": "127.0.0.1:10900"} {
		c := node.DefaultConfig()
		c.Boot.Interface, c.Boot.NBDAddr = "lo", nbdAddr
		c.Cluster.DataDir = t.TempDir()
		c.Cluster.HTTPAddr = "0.0.0.0:7480"
		c.Cluster.Advertise = "127.0.0.1"
		c.Logger = nil
		if err := c.Validate(); err != nil {
			t.Fatalf("nbd %q: %v", nbdAddr, err)
		}
		n, err := node.New(c)
		if err != nil {
			t.Fatalf("nbd %q: %v", nbdAddr, err)
		}
		if got := n.BootConfig().NBDAddr; got != want {
			t.Errorf("--nbd-addr %q with an interface: %q, want %q", nbdAddr, got, want)
		}
	}
}

// checkAgentCPIO unpacks the agent initrd with GNU cpio.
func checkAgentCPIO(t *testing.T, url, host, version string) {
	t.Helper()
	if _, err := exec.LookPath("cpio"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs cpio")
		}
		t.Skip("needs cpio (make deps installs it)")
	}
	resp, err := http.Get(url)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %v %v", url, err, resp)
	}
	defer resp.Body.Close()
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir, cmd.Stdin = dir, resp.Body
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, out)
	}
	var cfg bootsvc.AgentConfig
	b, _ := os.ReadFile(filepath.Join(dir, "etc/shoal/boot.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Hostname != host || cfg.Version != version || len(cfg.Servers) != 1 || cfg.Mode != "diskless-ram" {
		t.Errorf("boot.json %s: %v", b, err)
	}
	self, _ := os.Executable()
	want, _ := os.Stat(self)
	got, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || got.Size() != want.Size() || got.Mode().Perm() != 0o755 {
		t.Errorf("init in the agent initrd: %v %v, want %d bytes mode 0755", got, err, want.Size())
	}
}

// TestNBDExport: a stock client (qemu-img from qemu-utils) copies an image
// version out of the node's NBD export byte for byte, by image name (the
// current version) and by name@version-prefix; unknown names are refused.
func TestNBDExport(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("needs qemu-img (qemu-utils)")
		}
		t.Skip("needs qemu-img (qemu-utils; make deps installs it)")
	}
	ip := fmt.Sprintf("127.251.%d.%d", os.Getpid()%250, ipSeq.Add(1))
	base := nodetest.Start(t, "t1", ip, func(c *node.Config) { c.Boot.NBDAddr = ip + ":10809" })
	data := strings.Repeat("squashfs-ish bytes ", 70000) // 1.3 MB, not a 4 KiB multiple
	root := uploadBlob(t, base, data)
	kernel := uploadBlob(t, base, "KERNEL")
	ver, _ := json.Marshal(map[string]any{
		"id": root.ID, "size": root.Size, "sha256": root.ID, "format": "squashfs", "piece_length": root.PieceLength,
		"kernel_blob": kernel.ID, "blobs": []catalog.Blob{root, kernel}, "activate": true,
	})
	if code, body := do(t, "POST", base+"/v1/images/os/versions", string(ver)); code != 201 {
		t.Fatalf("add version: %d %s", code, body)
	}
	for _, export := range []string{"os", "os@" + root.ID[:12]} {
		out := filepath.Join(t.TempDir(), "copy.img")
		cmd := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "raw", "nbd://"+ip+":10809/"+export, out)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("qemu-img convert %s: %v %s", export, err, b)
		}
		got, _ := os.ReadFile(out)
		if len(got) < len(data) || string(got[:len(data)]) != data || strings.Trim(string(got[len(data):]), "\x00") != "" {
			t.Errorf("export %s: %d bytes, not the image (%d bytes) plus zero padding", export, len(got), len(data))
		}
	}
	// The agent initrd tells diskless-nbd machines where the exports are.
	for _, st := range []struct{ path, body string }{
		{"/v1/groups", `{"name":"thin","image":"os","boot_mode":"diskless-nbd"}`},
		{"/v1/clients", `{"mac":"52:54:00:77:00:05","hostname":"thin1","group":"thin"}`},
	} {
		if code, body := do(t, "POST", base+st.path, st.body); code != 201 {
			t.Fatalf("POST %s: %d %s", st.path, code, body)
		}
	}
	if code, cpio := do(t, "GET", base+"/v1/boot/agent/52-54-00-77-00-05/agent.cpio", ""); code != 200 ||
		!strings.Contains(cpio, `"nbd": [`) || !strings.Contains(cpio, `"`+ip+`:10809"`) {
		t.Errorf("agent initrd: %d, boot.json without the NBD address %s:10809", code, ip)
	}
	if b, err := exec.Command("qemu-img", "info", "nbd://"+ip+":10809/nope").CombinedOutput(); err == nil {
		t.Errorf("unknown export opened: %s", b)
	}
	_, metrics := do(t, "GET", base+"/metrics", "")
	if !strings.Contains(metrics, `shoal_nbd_read_bytes_total{export="os"}`) {
		t.Errorf("metrics lack NBD reads")
	}
}

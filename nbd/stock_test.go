package nbd

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Stock clients against the server: qemu-img/qemu-io (qemu-utils) read
// bytes back with no kernel module; nbd-client (the one initramfs images
// carry) can only list exports here, since attaching /dev/nbdX needs the
// nbd module. scripts/install-deps.sh installs both packages.

// needTool skips when a stock client is missing, except in CI where the
// deps script must have installed it.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s not found (Debian package %s; scripts/install-deps.sh installs it)", name, pkg)
	}
	t.Skipf("%s not found: install Debian package %s (scripts/install-deps.sh as root)", name, pkg)
	return ""
}

// runTool runs a stock client with a bounded time and returns its stdout.
func runTool(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

func TestStockQemu(t *testing.T) {
	qemuImg := needTool(t, "qemu-img", "qemu-utils")
	qemuIO := needTool(t, "qemu-io", "qemu-utils")
	img := testImage(imgSize)
	ts := startServer(t, &Server{Exports: imageExports(img)})
	url := "nbd://" + ts.addr + "/deb12"

	t.Run("info", func(t *testing.T) {
		var info struct {
			VirtualSize int64 `json:"virtual-size"`
		}
		out := runTool(t, qemuImg, "info", "--output=json", url)
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			t.Fatalf("qemu-img info: %v\n%s", err, out)
		}
		if info.VirtualSize != wireSize {
			t.Errorf("qemu-img info: virtual-size %d, want %d", info.VirtualSize, wireSize)
		}
	})
	t.Run("convert whole image", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "copy.raw")
		runTool(t, qemuImg, "convert", "-f", "raw", "-O", "raw", url, out)
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if want := padded(img); !bytes.Equal(got, want) {
			t.Fatalf("qemu-img convert: %d bytes that differ from the %d-byte padded image", len(got), len(want))
		}
	})
	t.Run("qemu-io read pattern and write refused", func(t *testing.T) {
		zeros := "nbd://" + ts.addr + "/alpine" // 4096 zero bytes
		// read -P checks every byte against the pattern and fails otherwise.
		out := runTool(t, qemuIO, "-r", "-f", "raw", "-c", "read -P 0 0 4096", zeros)
		if !strings.Contains(out, "read 4096/4096 bytes") {
			t.Errorf("qemu-io read: %s", out)
		}
		// Opened read-write, qemu sees NBD_FLAG_READ_ONLY and refuses to
		// open the image at all ("Permission denied").
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := exec.CommandContext(ctx, qemuIO, "-f", "raw", "-c", "write 0 512", zeros).CombinedOutput()
		if err == nil || !strings.Contains(string(b), "Permission denied") {
			t.Errorf("qemu-io write to a read-only export did not fail: %v %s", err, b)
		}
	})
}

func TestStockNBDClientList(t *testing.T) {
	nbdClient := needTool(t, "nbd-client", "nbd-client")
	ts := startServer(t, &Server{Exports: imageExports(testImage(4096))})
	host, port, _ := strings.Cut(ts.addr, ":")
	out := runTool(t, nbdClient, "-l", host, port)
	for _, name := range []string{"deb12", "alpine"} {
		if !strings.Contains(out, name) {
			t.Errorf("nbd-client -l: %q missing from\n%s", name, out)
		}
	}
}

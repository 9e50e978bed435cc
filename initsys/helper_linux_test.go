//go:build linux

package initsys

import (
	"bufio"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a helper process instead of
// running tests (TestMain), so tests can re-run it inside namespaces.
const helperEnv = "SHOAL_INITSYS_HELPER"

var helpers = map[string]func() error{
	"switchroot":     helperSwitchRoot,
	"afterswitch":    helperAfterSwitch,
	"netup":          helperNetUp,
	"netup-noserver": helperNetUpNoServer,
	"attachconsole":  helperAttachConsole,
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		fn, ok := helpers[mode]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, mode)
			os.Exit(2)
		}
		if err := fn(); err != nil {
			fmt.Printf("HELPER-FAILED %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// needRootTools skips unless running as root with the named commands.
func needRootTools(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (namespaces, mounts, loop devices); run go test as root to cover it")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// runHelper runs this test binary as helper mode under the given command
// prefix (e.g. unshare ...), with a bounded time, and returns its output.
func runHelper(t *testing.T, timeout time.Duration, mode string, env []string, prefix ...string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	args := append(append([]string{}, prefix[1:]...), exe)
	cmd := exec.CommandContext(ctx, prefix[0], args...)
	cmd.Env = append(append(os.Environ(), helperEnv+"="+mode), env...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		t.Logf("%s| %s", mode, line)
	}
	return string(out), err
}

// copyBinaryInto copies exe into dir at name and, if exe is dynamically
// linked (go test with cgo), its interpreter and libraries at their own
// paths, so it can run as init inside an image built from dir.
func copyBinaryInto(t *testing.T, exe, dir, name string) {
	t.Helper()
	copyFile(t, exe, filepath.Join(dir, name), 0o755)
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dynamic := false
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	if !dynamic {
		return
	}
	out, err := exec.Command("ldd", exe).Output()
	if err != nil {
		t.Skipf("test binary is dynamic and ldd failed: %v", err)
	}
	for _, lib := range regexp.MustCompile(`(/\S+) \(0x`).FindAllStringSubmatch(string(out), -1) {
		copyFile(t, lib[1], filepath.Join(dir, lib[1]), 0o755)
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// waitGone polls (bounded) until cond holds, failing with reason.
func waitGone(t *testing.T, reason string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Errorf("still there after 5 s: %s", reason)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loopsBackedBy lists loop devices whose backing file name contains s.
func loopsBackedBy(s string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), s) {
			devs = append(devs, f)
		}
	}
	return devs
}

// hasLine reports whether out has a line starting with prefix.
func hasLine(out, prefix string) bool {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return true
		}
	}
	return false
}

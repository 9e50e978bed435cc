package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/node/nodetest"
)

func TestServerConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "shoal.yaml")
	os.WriteFile(file, []byte("node-name: from-file\ndata-dir: /from/file\nraft-addr: 127.0.0.9:9001\njoin: [\"127.0.0.2:7946\"]\n"), 0o600)
	t.Setenv("SHOAL_DATA_DIR", "/from/env")
	t.Setenv("SHOAL_DEAD_SERVER_GRACE", "45s")
	cmd, v := newServerCmdViper()
	if err := cmd.ParseFlags([]string{"--config", file, "--raft-addr", "127.0.0.9:9002"}); err != nil {
		t.Fatal(err)
	}
	if err := readConfigFile(v); err != nil {
		t.Fatal(err)
	}
	c := serverConfig(v).Cluster
	checks := []struct{ name, got, want string }{
		{"file only", c.NodeName, "from-file"},
		{"env beats file", c.DataDir, "/from/env"},
		{"flag beats file", c.RaftAddr, "127.0.0.9:9002"},
		{"env duration", c.DeadServerGrace.String(), "45s"},
		{"default", c.HTTPAddr, "127.0.0.1:7480"},
		{"join from file", strings.Join(c.Join, ","), "127.0.0.2:7946"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	if c.BootstrapExpect != 0 {
		t.Errorf("with join and no bootstrap-expect, BootstrapExpect = %d, want 0", c.BootstrapExpect)
	}
}

func TestConfigFileTypoRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "shoal.yaml")
	os.WriteFile(file, []byte("bootstrap_expect: 3\nnode-name: a\n"), 0o600)
	cmd, v := newServerCmdViper()
	cmd.ParseFlags([]string{"--config", file})
	err := readConfigFile(v)
	if err == nil || !strings.Contains(err.Error(), "bootstrap_expect") {
		t.Fatalf("typo in config file: err = %v, want it named", err)
	}
}

func TestServerDefaults(t *testing.T) {
	cmd, v := newServerCmdViper()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	c := serverConfig(v).Cluster
	if c.BootstrapExpect != 1 || c.DataDir != "./shoal-data" || c.HTTPAddr != "127.0.0.1:7480" ||
		c.RaftAddr != "127.0.0.1:7481" || c.GossipAddr != "127.0.0.1:7946" || c.DeadServerGrace != 30*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("SHOAL_JOIN", "127.0.0.2:7946, 127.0.0.3:7946")
	cmd, v = newServerCmdViper()
	cmd.ParseFlags([]string{"--bootstrap-expect", "3"})
	c = serverConfig(v).Cluster
	if len(c.Join) != 2 || c.BootstrapExpect != 3 {
		t.Fatalf("env join list and explicit bootstrap-expect: %v %d", c.Join, c.BootstrapExpect)
	}
}

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// startNode runs an in-process node on 127.253.0.<host> and returns the
// --addr flag for it.
func startNode(t *testing.T, host int) string {
	t.Helper()
	return "--addr=" + nodetest.Start(t, "cli1", fmt.Sprintf("127.253.0.%d", host))
}

func TestOperatorVerbs(t *testing.T) {
	addr := startNode(t, 1)

	steps := []step{
		{[]string{"group", "add", "lab1", "--boot-mode", "diskless-nbd"}, "", "group lab1 created"},
		{[]string{"group", "add", "bad", "--boot-mode", "floppy"}, "boot", ""},
		{[]string{"client", "add", "AA:BB:CC:00:00:01", "--hostname", "pc1", "--group", "lab1"}, "", "aa:bb:cc:00:00:01 (pc1)"},
		{[]string{"client", "add", "aa:bb:cc:00:00:02", "--hostname", "pc1", "--group", "lab1"}, "HTTP 409", ""},
		{[]string{"client", "ls"}, "", "pc1"},
		{[]string{"client", "show", "aa-bb-cc-00-00-01"}, "", "lab1"},
		{[]string{"group", "ls"}, "", "diskless-nbd"},
		{[]string{"nodes"}, "", "leader"},
		{[]string{"group", "rm", "lab1"}, "HTTP 409", ""},
		{[]string{"client", "rm", "aa:bb:cc:00:00:01"}, "", "removed"},
		{[]string{"group", "rm", "lab1"}, "", "deleted"},
	}
	runSteps(t, addr, steps)
	out, err := run(t, addr, "--json", "status")
	var st map[string]any
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st["node"] != "cli1" {
		t.Errorf("status --json: %v %q", err, out)
	}
	if _, err := run(t, "--addr=127.253.0.99:1", "status"); err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable node: %v", err)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestImageVerbs(t *testing.T) {
	addr := startNode(t, 2)
	dir := t.TempDir()
	k, i := writeFile(t, dir, "vmlinuz", "kernel"), writeFile(t, dir, "initrd", "initrd")
	v1 := writeFile(t, dir, "v1.img", "hsqs"+strings.Repeat("one", 5000))
	v2 := writeFile(t, dir, "v2.img", strings.Repeat("two", 7000))
	importJSON := func(args ...string) importResult {
		t.Helper()
		out, err := run(t, append([]string{addr, "--json", "image", "import"}, args...)...)
		var r importResult
		if err != nil || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("image import %v: %v %s", args, err, out)
		}
		return r
	}
	r1 := importJSON("deb", v1, "--kernel", k, "--initrd", i, "--note", "first")
	r2 := importJSON("deb", v2, "--kernel", k, "--initrd", i, "--no-activate")
	if !r1.Activated || r2.Activated || r1.Version == r2.Version {
		t.Fatalf("imports: %+v %+v", r1, r2)
	}
	if again := importJSON("deb", v1, "--kernel", k, "--initrd", i); !again.Unchanged {
		t.Fatalf("same bytes again: %+v", again)
	}
	steps := []step{
		{[]string{"image", "ls"}, "", short(r1.Version)},
		{[]string{"image", "show", "deb"}, "", "first"},
		{[]string{"image", "show", "deb"}, "", "squashfs"},
		{[]string{"image", "activate", "deb", r2.Version[:10]}, "", "is current"},
		{[]string{"image", "activate", "deb", r1.Version}, "", "is current"}, // rollback
		{[]string{"group", "add", "lab", "--image", "deb", "--version", r2.Version}, "", "created"},
		{[]string{"image", "rm", "deb", r2.Version[:8]}, "HTTP 409", ""},
		{[]string{"image", "activate", "deb", "ffffff"}, "no version", ""},
		{[]string{"group", "rm", "lab"}, "", "deleted"},
		{[]string{"image", "rm", "deb", r2.Version[:8]}, "", "removed"},
	}
	runSteps(t, addr, steps)
	var im imageView
	out, _ := run(t, addr, "--json", "image", "show", "deb")
	if json.Unmarshal([]byte(out), &im) != nil || im.Current != r1.Version || len(im.Versions) != 1 {
		t.Fatalf("after rollback and rm: %s", out)
	}
	if _, err := run(t, addr, "image", "import", "x", v1, "--kernel", k, "--initrd", i, "--local"); err == nil ||
		!strings.Contains(err.Error(), "import-dir") {
		t.Errorf("--local without an import dir on the node: %v", err)
	}
}

// step is one CLI call and what it must print or fail with.
type step struct {
	args          []string
	wantErr, want string
}

func runSteps(t *testing.T, addr string, steps []step) {
	t.Helper()
	for _, s := range steps {
		out, err := run(t, append([]string{addr}, s.args...)...)
		switch {
		case s.wantErr != "" && (err == nil || !strings.Contains(err.Error(), s.wantErr)):
			t.Errorf("%v: err = %v, want one containing %q", s.args, err, s.wantErr)
		case s.wantErr == "" && err != nil:
			t.Errorf("%v: %v", s.args, err)
		case !strings.Contains(out, s.want):
			t.Errorf("%v: output %q lacks %q", s.args, out, s.want)
		}
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func threadSlacks(t *testing.T) map[string]string {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*")
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads: %v (%d)", err, len(tasks))
	}
	out := map[string]string{}
	for _, tk := range tasks {
		b, err := os.ReadFile("/proc/" + filepath.Base(tk) + "/timerslack_ns")
		if os.IsNotExist(err) {
			continue // the thread exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(tk)] = strings.TrimSpace(string(b))
	}
	return out
}

func TestSetTimerSlackAllThreads(t *testing.T) {
	before := threadSlacks(t)
	if len(before) < 2 {
		t.Fatalf("a Go test process has several threads, found %d", len(before))
	}
	err := setTimerSlack(agentTimerSlack)
	if err != nil && os.Geteuid() != 0 {
		t.Skipf("changing other threads' timer slack needs CAP_SYS_NICE (run as root): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = setTimerSlack(50 * time.Microsecond) }) // the kernel's default
	for tid, v := range threadSlacks(t) {
		if _, old := before[tid]; old && v != "1000000" {
			t.Errorf("thread %s: timer slack %s ns, want 1000000", tid, v)
		}
	}
}

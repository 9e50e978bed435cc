//go:build linux

package initsys

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLoopAttachErrors covers the failures before any loop device is
// touched; the real attach runs in TestBootSequence.
func TestLoopAttachErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoopAttach(filepath.Join(dir, "none.sqfs")); err == nil || !strings.Contains(err.Error(), "none.sqfs") {
		t.Errorf("missing image: err = %v", err)
	}
	oldCtl, oldWait := LoopControl, loopNodeWait
	LoopControl, loopNodeWait = filepath.Join(dir, "loop-control"), 50*time.Millisecond
	t.Cleanup(func() { LoopControl, loopNodeWait = oldCtl, oldWait })
	copyFile(t, "/dev/null", filepath.Join(dir, "image"), 0o644)
	_, err := LoopAttach(filepath.Join(dir, "image"))
	if err == nil || !strings.Contains(err.Error(), "loop-control") || !strings.Contains(err.Error(), "loop module") {
		t.Errorf("no loop-control: err = %v", err)
	}
}

package main

import (
	"os"
	"path/filepath"

	"github.com/shoal-project/shoal/bootagent"
)

// runAsInit: the kernel started this binary as /init of a diskless
// client's initramfs (the agent initrd). It never returns then.
func runAsInit() {
	if os.Getpid() == 1 && filepath.Base(os.Args[0]) == "init" {
		bootagent.Main()
	}
}

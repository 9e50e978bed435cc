//go:build linux

package initsys

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// ConsolePath is where Consolef writes; a variable so tests can redirect it.
var ConsolePath = "/dev/console"

// Consolef writes one "shoal-agent: ..." line to the console, so a message
// is visible on a serial console even before (or without) any logging
// setup. It falls back to stderr when the console cannot be opened.
func Consolef(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	_, _ = io.WriteString(ConsoleWriter(), "shoal-agent: "+msg+"\n")
}

// ConsoleWriter returns a writer for the console: each Write opens, writes
// and closes ConsolePath (so it keeps working across switch_root and never
// holds the console open), or goes to stderr if that fails.
func ConsoleWriter() io.Writer { return consoleWriter{} }

type consoleWriter struct{}

func (consoleWriter) Write(p []byte) (int, error) {
	f, err := os.OpenFile(ConsolePath, os.O_WRONLY|os.O_APPEND|unix.O_NOCTTY, 0)
	if err != nil {
		return os.Stderr.Write(p)
	}
	defer f.Close()
	return f.Write(p)
}

// AttachConsole makes ConsolePath the process's stdin, stdout and stderr.
// The kernel gives /init the console as fds 0-2 only if the initramfs has a
// /dev/console node; otherwise they are closed and even a Go panic
// message is lost. Call it right after MountBasics (devtmpfs has the node).
func AttachConsole() error {
	fd, err := unix.Open(ConsolePath, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("attach console %s: %w", ConsolePath, err)
	}
	for target := 0; target <= 2; target++ {
		if fd == target {
			continue
		}
		if err := unix.Dup3(fd, target, 0); err != nil {
			return fmt.Errorf("attach console %s as fd %d: %w", ConsolePath, target, err)
		}
	}
	if fd > 2 {
		unix.Close(fd)
	}
	return nil
}

// ConsoleLogger returns a text slog.Logger that writes to the console.
func ConsoleLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(ConsoleWriter(), &slog.HandlerOptions{Level: level}))
}

// SetHostname sets the kernel's host name (what hostname(1) does).
func SetHostname(name string) error {
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("set hostname %q: %w", name, err)
	}
	return nil
}

// PowerOff syncs file systems and powers the machine off. It returns only
// on error (for example when not PID 1 in a VM and not root).
func PowerOff() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		return fmt.Errorf("power off: %w", err)
	}
	return nil
}

// Reboot syncs file systems and restarts the machine. It returns only on
// error.
func Reboot() error {
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	return nil
}

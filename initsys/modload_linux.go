//go:build linux

package initsys

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// insmod loads one module file; a variable so tests never touch the host
// kernel.
var insmod = loadModuleFile

// LoadModules loads the named modules and their dependencies for the
// running kernel, from root/lib/modules/<uname -r>. Built-in modules and
// modules already loaded count as success. Each name's failure is reported
// separately and the errors are joined, so one missing driver does not
// stop the others from loading.
func LoadModules(root string, names ...string) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("load modules: uname: %w", err)
	}
	release := unix.ByteSliceToString(uts.Release[:])
	return LoadModulesFrom(filepath.Join(root, "lib", "modules", release), names...)
}

// LoadModulesFrom is LoadModules with an explicit modules directory.
func LoadModulesFrom(dir string, names ...string) error {
	ix, err := ReadModuleIndex(dir)
	if err != nil {
		return fmt.Errorf("load modules %s: %w", strings.Join(names, " "), err)
	}
	seen := map[string]bool{}
	var errs []error
	for _, name := range names {
		files, err := ix.Resolve(name, seen)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, f := range files {
			if err := insmod(f); err != nil {
				errs = append(errs, fmt.Errorf("module %s: %w", name, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// loadModuleFile loads one .ko, .ko.gz, .ko.xz or .ko.zst file. Plain and
// gzip files are loaded from user space; xz and zstd are handed to the
// kernel with MODULE_INIT_COMPRESSED_FILE, which works only when the kernel
// was built with CONFIG_MODULE_DECOMPRESS (Debian's 6.1 kernels ship plain
// .ko files, so this is the rare case).
func loadModuleFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("load %w", err)
	}
	defer f.Close()
	switch {
	case strings.HasSuffix(path, ".ko"):
		err = finitOrInit(f)
	case strings.HasSuffix(path, ".ko.gz"):
		err = initGzip(f)
	case strings.HasSuffix(path, ".ko.xz"), strings.HasSuffix(path, ".ko.zst"):
		err = unix.FinitModule(int(f.Fd()), "", unix.MODULE_INIT_COMPRESSED_FILE)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("load %s: the kernel cannot decompress %s modules itself (CONFIG_MODULE_DECOMPRESS) and shoal does not: %w",
				path, filepath.Ext(path), err)
		}
	default:
		return fmt.Errorf("load %s: not a kernel module file name (.ko, .ko.gz, .ko.xz, .ko.zst)", path)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load %s: %w", path, err)
	}
	return nil
}

func finitOrInit(f *os.File) error {
	err := unix.FinitModule(int(f.Fd()), "", 0)
	if !errors.Is(err, unix.ENOSYS) {
		return err
	}
	image, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	return unix.InitModule(image, "")
}

func initGzip(f *os.File) error {
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	var image bytes.Buffer
	if _, err := io.Copy(&image, zr); err != nil {
		return fmt.Errorf("gunzip: %w", err)
	}
	return unix.InitModule(image.Bytes(), "")
}

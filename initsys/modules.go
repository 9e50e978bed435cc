package initsys

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ErrModuleNotFound is wrapped by errors for a module that is neither in
// modules.dep nor in modules.builtin.
var ErrModuleNotFound = errors.New("module not found")

// Module is one line of modules.dep: where the module's file is (relative
// to the modules directory, as written there) and every module it needs,
// as written by depmod (the full closure, most basic last).
type Module struct {
	Path string
	Deps []string
}

// ModuleName returns the canonical module name for a name or a path as
// written in modules.dep: the base name without ".ko" and a compression
// suffix, with '-' turned into '_' (the kernel treats them alike).
func ModuleName(s string) string {
	s = filepath.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// ParseModulesDep reads modules.dep ("path: dep dep ...") into a map from
// canonical module name (see ModuleName) to Module.
func ParseModulesDep(r io.Reader) (map[string]Module, error) {
	mods := make(map[string]Module)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		path, deps, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(path) == "" {
			return nil, fmt.Errorf("modules.dep line %d: no \"path:\" in %q", n, line)
		}
		path = strings.TrimSpace(path)
		mods[ModuleName(path)] = Module{Path: path, Deps: strings.Fields(deps)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return mods, nil
}

// ParseModulesBuiltin reads modules.builtin (one path per line) into a set
// of canonical module names.
func ParseModulesBuiltin(r io.Reader) (map[string]bool, error) {
	set := make(map[string]bool)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			set[ModuleName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.builtin: %w", err)
	}
	return set, nil
}

// ModuleIndex is what depmod wrote for one kernel: the modules directory
// and its parsed modules.dep and modules.builtin.
type ModuleIndex struct {
	Dir     string // e.g. /lib/modules/6.1.0-56-cloud-amd64
	Modules map[string]Module
	Builtin map[string]bool
}

// ReadModuleIndex reads modules.dep and (if present) modules.builtin from
// dir. A missing modules.builtin is not an error: a kernel without
// built-in modules may not have one.
func ReadModuleIndex(dir string) (*ModuleIndex, error) {
	ix := &ModuleIndex{Dir: dir, Builtin: map[string]bool{}}
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer f.Close()
	if ix.Modules, err = ParseModulesDep(f); err != nil {
		return nil, fmt.Errorf("module index %s: %w", f.Name(), err)
	}
	b, err := os.Open(filepath.Join(dir, "modules.builtin"))
	if errors.Is(err, os.ErrNotExist) {
		return ix, nil
	} else if err != nil {
		return nil, fmt.Errorf("module index: %w", err)
	}
	defer b.Close()
	if ix.Builtin, err = ParseModulesBuiltin(b); err != nil {
		return nil, fmt.Errorf("module index %s: %w", b.Name(), err)
	}
	return ix, nil
}

// Resolve returns the files to load for name, dependencies first, as
// absolute paths below Dir. A built-in module gives an empty list. Paths
// already in seen are left out and new ones are added to it, so one seen
// set across several calls loads every module once.
func (ix *ModuleIndex) Resolve(name string, seen map[string]bool) ([]string, error) {
	key := ModuleName(name)
	if ix.Builtin[key] {
		return nil, nil
	}
	if _, ok := ix.Modules[key]; !ok {
		return nil, fmt.Errorf("module %s: %w in %s/modules.dep or modules.builtin", name, ErrModuleNotFound, ix.Dir)
	}
	var order []string
	if err := ix.visit(key, seen, map[string]bool{}, &order); err != nil {
		return nil, fmt.Errorf("module %s: %w", name, err)
	}
	return order, nil
}

// visit appends key's dependencies, then key, to order (depth first). Each
// dependency is followed through its own modules.dep line rather than
// trusting the order depmod wrote, so a hand-edited file still works.
func (ix *ModuleIndex) visit(key string, seen, onPath map[string]bool, order *[]string) error {
	if ix.Builtin[key] {
		return nil
	}
	m, ok := ix.Modules[key]
	if !ok {
		return fmt.Errorf("dependency %s: %w in %s/modules.dep", key, ErrModuleNotFound, ix.Dir)
	}
	path := ix.abs(m.Path)
	if seen[path] {
		return nil
	}
	if onPath[key] {
		return fmt.Errorf("dependency cycle through %s in %s/modules.dep", key, ix.Dir)
	}
	onPath[key] = true
	// depmod lists the most basic module last; modprobe loads from the end.
	for i := len(m.Deps) - 1; i >= 0; i-- {
		if err := ix.visit(ModuleName(m.Deps[i]), seen, onPath, order); err != nil {
			return err
		}
	}
	onPath[key] = false
	seen[path] = true
	*order = append(*order, path)
	return nil
}

func (ix *ModuleIndex) abs(p string) string {
	if filepath.IsAbs(p) {
		// depmod -b writes paths relative to the modules dir, but older
		// tools wrote absolute ones; keep them below Dir's root either way.
		return filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(ix.Dir))), p)
	}
	return filepath.Join(ix.Dir, p)
}

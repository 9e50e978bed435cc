package bootsvc

import (
	"fmt"
	"io"
	"strings"
)

// CPIOFile is one entry of a newc ("070701") cpio archive, the format the
// Linux kernel unpacks as an initramfs. Directories have Mode with
// ModeDir set and no body.
type CPIOFile struct {
	Name string // relative, no leading '/': "init", "etc/shoal/boot.json"
	Mode uint32 // full st_mode, e.g. ModeFile|0o755
	Size int64
	Body io.Reader // Size bytes; nil for directories
}

// st_mode file types for CPIOFile.Mode.
const (
	ModeDir  = 0o040000
	ModeFile = 0o100000
)

// CPIOSize is the archive's exact length, for Content-Length.
func CPIOSize(files []CPIOFile) int64 {
	var n int64
	for _, f := range files {
		n += pad4(110+int64(len(f.Name))+1) + pad4(f.Size)
	}
	return n + pad4(110+int64(len(cpioTrailer))+1)
}

const cpioTrailer = "TRAILER!!!"

func pad4(n int64) int64 { return (n + 3) &^ 3 }

// WriteCPIO writes files as a newc archive with the trailer. Owner is root,
// mtime 0, so the same files give the same bytes. A body shorter than its
// Size is an error (the archive would be corrupt).
func WriteCPIO(w io.Writer, files []CPIOFile) error {
	for i, f := range files {
		if f.Name == "" || strings.HasPrefix(f.Name, "/") || strings.Contains(f.Name, "..") {
			return fmt.Errorf("cpio: bad entry name %q", f.Name)
		}
		if err := writeCPIOEntry(w, uint32(i+1), f); err != nil {
			return err
		}
	}
	return writeCPIOEntry(w, 0, CPIOFile{Name: cpioTrailer})
}

func writeCPIOEntry(w io.Writer, ino uint32, f CPIOFile) error {
	nlink := 1
	if f.Mode&ModeDir != 0 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		ino, f.Mode, 0, 0, nlink, 0, f.Size, 0, 0, 0, 0, len(f.Name)+1, 0)
	head := hdr + f.Name + "\x00"
	head += strings.Repeat("\x00", int(pad4(int64(len(head)))-int64(len(head))))
	if _, err := io.WriteString(w, head); err != nil {
		return err
	}
	if f.Size == 0 {
		return nil
	}
	n, err := io.CopyN(w, f.Body, f.Size)
	if err != nil {
		return fmt.Errorf("cpio: %s: wrote %d of %d bytes: %w", f.Name, n, f.Size, err)
	}
	_, err = w.Write(make([]byte, pad4(f.Size)-f.Size))
	return err
}

package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// imageView mirrors the API's image answer: the catalogue image plus the
// nodes holding each version completely.
type imageView struct {
	catalog.Image
	Holders map[string][]string `json:"holders"`
}

func (o *operator) imageCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Import, list, activate and remove OS images"}
	cmd.AddCommand(o.imageImportCmd(), o.imageLsCmd(), o.imageShowCmd(), o.imageActivateCmd(), o.imageRmCmd())
	return cmd
}

type importOpts struct {
	kernel, initrd, cmdline, note, format string
	local, noActivate                     bool
}

// importResult is what `image import --json` prints.
type importResult struct {
	Image     string `json:"image"`
	Version   string `json:"version"`
	Size      int64  `json:"size"`
	Blobs     int    `json:"blobs"`
	Activated bool   `json:"activated"`
	Unchanged bool   `json:"unchanged"`
}

func (o *operator) imageImportCmd() *cobra.Command {
	var io importOpts
	cmd := &cobra.Command{
		Use:   "import NAME ROOTFS --kernel FILE --initrd FILE",
		Short: "Import a root image (squashfs, ext4 or raw) with its kernel and initrd as a new version",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			res, err := o.importImage(args[0], args[1], io)
			if err != nil {
				return err
			}
			return o.show(cmd, res, func(w *tabwriter.Writer) {
				switch {
				case res.Unchanged:
					fmt.Fprintf(w, "image %s already has version %s: nothing to do\n", res.Image, short(res.Version))
				default:
					fmt.Fprintf(w, "imported %s version %s (%s)", res.Image, short(res.Version), human(res.Size))
					if res.Activated {
						fmt.Fprint(w, ", now current")
					}
					fmt.Fprintln(w)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&io.kernel, "kernel", "", "kernel image file (required)")
	f.StringVar(&io.initrd, "initrd", "", "initrd file (required)")
	f.StringVar(&io.cmdline, "cmdline", "", "kernel command line for this version")
	f.StringVar(&io.note, "note", "", "free text shown with the version")
	f.StringVar(&io.format, "format", "auto", "squashfs, ext4, raw or auto (detected from the file)")
	f.BoolVar(&io.local, "local", false, "the files are on the node itself (below its --import-dir): no upload")
	f.BoolVar(&io.noActivate, "no-activate", false, "add the version without making it current")
	cmd.MarkFlagRequired("kernel")
	cmd.MarkFlagRequired("initrd")
	return cmd
}

func (o *operator) importImage(name, rootfs string, opts importOpts) (importResult, error) {
	res := importResult{Image: name}
	if !opts.local {
		id, err := fileSHA256(rootfs)
		if err != nil {
			return res, err
		}
		if v, ok := o.version(name, id); ok {
			if err := sameBoot(v, opts); err != nil {
				return res, err
			}
			res.Version, res.Unchanged = id, true
			return res, nil
		}
	}
	var blobs []catalog.Blob
	for _, p := range []string{rootfs, opts.kernel, opts.initrd} {
		b, err := o.putBlob(p, opts.local)
		if err != nil {
			return res, err
		}
		blobs = append(blobs, b)
	}
	format, err := detectFormat(rootfs, opts.format, opts.local)
	if err != nil {
		return res, err
	}
	root := blobs[0]
	ver := map[string]any{
		"id": root.ID, "sha256": root.ID, "size": root.Size, "piece_length": root.PieceLength,
		"format": format, "kernel_blob": blobs[1].ID, "initrd_blob": blobs[2].ID,
		"cmdline": opts.cmdline, "note": opts.note, "blobs": dedupBlobs(blobs), "activate": !opts.noActivate,
	}
	res.Version, res.Size, res.Blobs = root.ID, root.Size, len(dedupBlobs(blobs))
	err = o.call("POST", "/v1/images/"+pathEscape(name)+"/versions", ver, nil)
	if _, ok := o.version(name, root.ID); err != nil && strings.Contains(err.Error(), "HTTP 409") && ok {
		res.Unchanged = true
		return res, nil
	}
	res.Activated = err == nil && !opts.noActivate
	return res, err
}

func dedupBlobs(bs []catalog.Blob) []catalog.Blob {
	var out []catalog.Blob
	seen := map[string]bool{}
	for _, b := range bs {
		if !seen[b.ID] {
			seen[b.ID] = true
			out = append(out, b)
		}
	}
	return out
}

func (o *operator) version(name, id string) (catalog.ImageVersion, bool) {
	var im imageView
	if o.call("GET", "/v1/images/"+pathEscape(name), nil, &im) != nil {
		return catalog.ImageVersion{}, false
	}
	for _, v := range im.Versions {
		if v.ID == id {
			return v, true
		}
	}
	return catalog.ImageVersion{}, false
}

// sameBoot: a version is its root image plus kernel, initrd and command
// line; the same root with other boot files is refused rather than
// silently reported as "nothing to do".
func sameBoot(v catalog.ImageVersion, opts importOpts) error {
	k, err := fileSHA256(opts.kernel)
	if err != nil {
		return err
	}
	i, err := fileSHA256(opts.initrd)
	if err != nil {
		return err
	}
	if k != v.KernelBlob || i != v.InitrdBlob || opts.cmdline != v.Cmdline {
		return fmt.Errorf("version %s exists with another kernel, initrd or command line; a version is identified by its root image: change the root image or remove the version first", short(v.ID))
	}
	return nil
}

// putBlob uploads one file (or, with local, asks the node to read it) and
// returns the blob the node stored.
func (o *operator) putBlob(path string, local bool) (catalog.Blob, error) {
	var b catalog.Blob
	if local {
		// The node copies and hashes the file before it answers: no
		// client timeout, a large image takes minutes.
		slow := *o
		slow.client = &http.Client{}
		return b, slow.call("POST", "/v1/blobs?path="+url.QueryEscape(path), nil, &b)
	}
	f, err := os.Open(path)
	if err != nil {
		return b, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return b, err
	}
	req, err := http.NewRequest("POST", o.base()+"/v1/blobs", newProgress(f, st.Size(), path))
	if err != nil {
		return b, err
	}
	req.ContentLength = st.Size()
	resp, err := (&http.Client{}).Do(req) // no timeout: images can be large
	if err != nil {
		return b, fmt.Errorf("upload %s to %s: %w", path, o.base(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusCreated {
		return b, fmt.Errorf("upload %s: %s: %s", path, resp.Status, strings.TrimSpace(string(data)))
	}
	return b, json.Unmarshal(data, &b)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// detectFormat reads the file's magic: squashfs "hsqs" at 0, ext2/3/4
// 0xEF53 at 1080; anything else is raw. A local import's file is on the
// node, so there --format must be given or raw is assumed.
func detectFormat(path, want string, local bool) (string, error) {
	if want != "auto" {
		if !catalog.Format(want).Valid() {
			return "", fmt.Errorf("--format %q: want squashfs, ext4, raw or auto", want)
		}
		return want, nil
	}
	if local {
		return "", fmt.Errorf("--local: the file is on the node, so give --format squashfs, ext4 or raw")
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 1082)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("hsqs")):
		return string(catalog.FormatSquashfs), nil
	case n >= 1082 && binary.LittleEndian.Uint16(head[1080:]) == 0xEF53:
		return string(catalog.FormatExt4), nil
	}
	return string(catalog.FormatRaw), nil
}

// progress draws one updating line on a terminal while a file uploads.
type progress struct {
	r     io.Reader
	size  int64
	done  int64
	name  string
	start time.Time
	last  time.Time
	tty   bool
}

func newProgress(r io.Reader, size int64, name string) *progress {
	st, err := os.Stderr.Stat()
	tty := err == nil && st.Mode()&os.ModeCharDevice != 0
	return &progress{r: r, size: size, name: name, start: time.Now(), tty: tty}
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.tty && (time.Since(p.last) > 200*time.Millisecond || err == io.EOF) {
		p.last = time.Now()
		rate := float64(p.done) / max(time.Since(p.start).Seconds(), 0.001)
		fmt.Fprintf(os.Stderr, "\r  %s: %s / %s  %3.0f%%  %s/s   ", p.name, human(p.done), human(p.size),
			100*float64(p.done)/float64(max(p.size, 1)), human(int64(rate)))
		if err == io.EOF {
			fmt.Fprintln(os.Stderr)
		}
	}
	return n, err
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func (o *operator) imageLsCmd() *cobra.Command {
	return &cobra.Command{
		Use: "ls", Short: "List images", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var ims []imageView
			if err := o.call("GET", "/v1/images", nil, &ims); err != nil {
				return err
			}
			return o.show(cmd, ims, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tCURRENT\tVERSIONS\tSIZE\tCOMPLETE ON")
				for _, im := range ims {
					size, on := "-", "-"
					for _, v := range im.Versions {
						if v.ID == im.Current {
							size, on = human(v.Size), strings.Join(im.Holders[v.ID], ",")
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", im.Name, short(im.Current), len(im.Versions), size, dash(on))
				}
			})
		},
	}
}

func (o *operator) imageShowCmd() *cobra.Command {
	return &cobra.Command{
		Use: "show NAME", Short: "Show an image's versions and which nodes hold each completely", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var im imageView
			if err := o.call("GET", "/v1/images/"+pathEscape(args[0]), nil, &im); err != nil {
				return err
			}
			return o.show(cmd, im, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "image %s\n\n", im.Name)
				fmt.Fprintln(w, "VERSION\tCURRENT\tSIZE\tFORMAT\tCREATED\tCOMPLETE ON\tNOTE")
				for _, v := range im.Versions {
					cur := ""
					if v.ID == im.Current {
						cur = "*"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", short(v.ID), cur, human(v.Size), v.Format,
						time.Unix(v.Created, 0).UTC().Format("2006-01-02 15:04"), dash(strings.Join(im.Holders[v.ID], ",")), dash(v.Note))
				}
			})
		},
	}
}

// resolveVersion accepts a unique prefix of a version id, as printed.
func (o *operator) resolveVersion(name, prefix string) (string, error) {
	var im imageView
	if err := o.call("GET", "/v1/images/"+pathEscape(name), nil, &im); err != nil {
		return "", err
	}
	var hits []string
	for _, v := range im.Versions {
		if strings.HasPrefix(v.ID, strings.ToLower(prefix)) {
			hits = append(hits, v.ID)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return "", fmt.Errorf("image %s has no version %q", name, prefix)
	}
	return "", fmt.Errorf("version %q is ambiguous in image %s: %d versions match", prefix, name, len(hits))
}

func (o *operator) imageActivateCmd() *cobra.Command {
	return &cobra.Command{
		Use: "activate NAME VERSION", Short: "Make a version current (also how you roll back)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := o.resolveVersion(args[0], args[1])
			if err != nil {
				return err
			}
			var im imageView
			if err := o.call("POST", "/v1/images/"+pathEscape(args[0])+"/activate", map[string]string{"version": id}, &im); err != nil {
				return err
			}
			return o.show(cmd, im, func(w *tabwriter.Writer) { fmt.Fprintf(w, "image %s: version %s is current\n", args[0], short(id)) })
		},
	}
}

func (o *operator) imageRmCmd() *cobra.Command {
	return &cobra.Command{
		Use: "rm NAME VERSION", Short: "Remove a version (refused while a group pins it)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := o.resolveVersion(args[0], args[1])
			if err != nil {
				return err
			}
			if err := o.call("DELETE", "/v1/images/"+pathEscape(args[0])+"/versions/"+id, nil, nil); err != nil {
				return err
			}
			return o.show(cmd, map[string]string{"removed": id}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "image %s: version %s removed\n", args[0], short(id))
			})
		},
	}
}

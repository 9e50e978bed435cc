package main

import (
	"bytes"
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
)

// operator holds what every API verb shares: the node to talk to and the
// output format. Any node will do; writes are forwarded to the leader.
type operator struct {
	addr   string
	json   bool
	client *http.Client
	out    io.Writer
}

func newOperator(root *cobra.Command) *operator {
	o := &operator{client: &http.Client{Timeout: 30 * time.Second}}
	def := os.Getenv("SHOAL_ADDR")
	if def == "" {
		def = "http://127.0.0.1:7480"
	}
	root.PersistentFlags().StringVar(&o.addr, "addr", def, "API of any shoal node (env SHOAL_ADDR)")
	root.PersistentFlags().BoolVar(&o.json, "json", false, "print JSON instead of tables")
	return o
}

func (o *operator) base() string {
	a := strings.TrimRight(o.addr, "/")
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	return a
}

// call does one API request; a non-2xx answer becomes an error carrying the
// server's message.
func (o *operator) call(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, o.base()+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach shoal node at %s: %w", o.base(), errors.Unwrap(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// show prints v as JSON with --json, otherwise calls table.
func (o *operator) show(cmd *cobra.Command, v any, table func(*tabwriter.Writer)) error {
	w := cmd.OutOrStdout()
	if o.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func pathEscape(s string) string { return url.PathEscape(s) }

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

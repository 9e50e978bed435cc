package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/shoal-project/shoal/cluster/catalog"
	"github.com/shoal-project/shoal/node"
)

type statusView struct {
	Node         string `json:"node"`
	State        string `json:"state"`
	Leader       string `json:"leader"`
	Term         uint64 `json:"term"`
	AppliedIndex uint64 `json:"applied_index"`
	Servers      []struct {
		ID       string `json:"id"`
		Address  string `json:"address"`
		Suffrage string `json:"suffrage"`
		Leader   bool   `json:"leader"`
	} `json:"servers"`
	Catalog struct {
		AppliedIndex uint64 `json:"applied_index"`
		Digest       string `json:"digest"`
		Groups       int    `json:"groups"`
		Clients      int    `json:"clients"`
		Images       int    `json:"images"`
	} `json:"catalog"`
}

func (o *operator) statusCmd() *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Show a node's raft state, leader and catalogue digest", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			var st statusView
			if err := o.call("GET", "/v1/status", nil, &raw); err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &st); err != nil {
				return err
			}
			return o.show(cmd, raw, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "node:\t%s\nstate:\t%s\nleader:\t%s\nterm:\t%d\napplied index:\t%d\n",
					st.Node, st.State, dash(st.Leader), st.Term, st.AppliedIndex)
				fmt.Fprintf(w, "catalogue:\t%d groups, %d clients, %d images, digest %s\n\n",
					st.Catalog.Groups, st.Catalog.Clients, st.Catalog.Images, shortDigest(st.Catalog.Digest))
				fmt.Fprintln(w, "SERVER\tADDRESS\tSUFFRAGE\tLEADER")
				for _, s := range st.Servers {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\n", s.ID, s.Address, s.Suffrage, s.Leader)
				}
			})
		},
	}
}

func shortDigest(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

type nodeView struct {
	Name       string            `json:"name"`
	GossipAddr string            `json:"gossip_addr"`
	Meta       map[string]string `json:"meta"`
	Status     string            `json:"status"`
	Role       string            `json:"role"`
	Healthy    bool              `json:"healthy"`
}

func (o *operator) nodesCmd() *cobra.Command {
	return &cobra.Command{
		Use: "nodes", Short: "List server nodes: gossip status, raft role, health", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var nodes []nodeView
			if err := o.call("GET", "/v1/nodes", nil, &nodes); err != nil {
				return err
			}
			return o.show(cmd, nodes, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tSTATUS\tROLE\tHEALTHY\tHTTP\tRAFT\tGOSSIP")
				for _, n := range nodes {
					fmt.Fprintf(w, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", n.Name, n.Status, n.Role, n.Healthy,
						dash(n.Meta["http"]), dash(n.Meta["raft"]), dash(n.GossipAddr))
				}
			})
		},
	}
}

func (o *operator) groupCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Manage client groups"}
	var g catalog.Group
	var mode string
	add := &cobra.Command{
		Use: "add NAME", Short: "Create a group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g.Name, g.BootMode = args[0], catalog.BootMode(mode)
			var out catalog.Group
			if err := o.call("POST", "/v1/groups", g, &out); err != nil {
				return err
			}
			return o.show(cmd, out, func(w *tabwriter.Writer) { fmt.Fprintf(w, "group %s created\n", out.Name) })
		},
	}
	f := add.Flags()
	f.StringVar(&g.Image, "image", "", "image the group boots")
	f.StringVar(&g.Version, "version", "", "pin an image version (default: follow the current one)")
	f.StringVar(&mode, "boot-mode", string(catalog.BootDisklessRAM), "diskless-ram, diskless-nbd or disk")
	f.StringVar(&g.KernelArgs, "kernel-args", "", "extra kernel command line arguments")
	f.StringSliceVar(&g.StatePaths, "state-path", nil, "absolute path whose contents persist per client (repeatable)")
	ls := &cobra.Command{
		Use: "ls", Short: "List groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var groups []catalog.Group
			if err := o.call("GET", "/v1/groups", nil, &groups); err != nil {
				return err
			}
			return o.show(cmd, groups, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tIMAGE\tVERSION\tBOOT MODE\tKERNEL ARGS")
				for _, g := range groups {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", g.Name, dash(g.Image), orCurrent(g.Version), g.BootMode, dash(g.KernelArgs))
				}
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a group (refused while clients are in it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.call("DELETE", "/v1/groups/"+pathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return o.show(cmd, map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) { fmt.Fprintf(w, "group %s deleted\n", args[0]) })
		},
	}
	cmd.AddCommand(add, ls, rm)
	return cmd
}

func orCurrent(v string) string {
	if v == "" {
		return "current"
	}
	return v
}

func (o *operator) clientCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "client", Short: "Manage client machines (by MAC address)"}
	var c catalog.Client
	add := &cobra.Command{
		Use: "add MAC", Short: "Register a client machine", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c.MAC = args[0]
			var out catalog.Client
			if err := o.call("POST", "/v1/clients", c, &out); err != nil {
				return err
			}
			return o.show(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "client %s (%s) added to group %s\n", out.MAC, out.Hostname, out.Group)
			})
		},
	}
	f := add.Flags()
	f.StringVar(&c.Hostname, "hostname", "", "host name (unique)")
	f.StringVar(&c.Group, "group", "", "group the client belongs to")
	f.StringVar(&c.IP, "ip", "", "fixed IPv4 address (optional)")
	f.StringVar(&c.KernelArgs, "kernel-args", "", "extra kernel arguments for this client only")
	add.MarkFlagRequired("hostname")
	add.MarkFlagRequired("group")
	var group string
	ls := &cobra.Command{
		Use: "ls", Short: "List clients", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/v1/clients"
			if group != "" {
				path += "?group=" + pathEscape(group)
			}
			var clients []catalog.Client
			if err := o.call("GET", path, nil, &clients); err != nil {
				return err
			}
			return o.show(cmd, clients, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "MAC\tHOSTNAME\tGROUP\tIP")
				for _, c := range clients {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", c.MAC, c.Hostname, c.Group, dash(c.IP))
				}
			})
		},
	}
	ls.Flags().StringVar(&group, "group", "", "only clients of this group")
	show := &cobra.Command{
		Use: "show MAC", Short: "Show one client", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var c node.ClientView
			if err := o.call("GET", "/v1/clients/"+pathEscape(args[0]), nil, &c); err != nil {
				return err
			}
			return o.show(cmd, c, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "mac:\t%s\nhostname:\t%s\ngroup:\t%s\nip:\t%s\nkernel args:\t%s\n",
					c.MAC, c.Hostname, c.Group, dash(c.IP), dash(c.KernelArgs))
				if c.Lease != nil {
					fmt.Fprintf(w, "lease:\t%s until %s\n", c.Lease.IP, time.Unix(c.Lease.Expires, 0).Format(time.RFC3339))
				}
				printLastBoot(w, c.LastBoot)
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm MAC", Short: "Remove a client", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.call("DELETE", "/v1/clients/"+pathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return o.show(cmd, map[string]string{"deleted": args[0]}, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "client %s removed\n", strings.ToLower(args[0]))
			})
		},
	}
	cmd.AddCommand(add, ls, show, rm)
	return cmd
}

// printLastBoot shows the machine's last boot step by step, each with the
// node that served it, oldest step first.
func printLastBoot(w *tabwriter.Writer, recs []node.BootRecord) {
	if len(recs) == 0 {
		fmt.Fprintf(w, "last boot:\tnever seen by a live node\n")
		return
	}
	type step struct {
		name, node string
		at         time.Time
	}
	var steps []step
	for _, r := range recs {
		for name, at := range r.Steps {
			steps = append(steps, step{name, r.Node, at})
		}
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].at.Before(steps[j].at) })
	last := recs[0]
	fmt.Fprintf(w, "last boot:\t%s %s on %s (ip %s, %s)\n", last.Last.Format(time.RFC3339), last.LastOf, last.Node, dash(last.IP), dash(last.Arch))
	for _, s := range steps {
		fmt.Fprintf(w, "  %s\t%s\tby %s\n", s.at.Format("15:04:05.000"), s.name, s.node)
	}
}

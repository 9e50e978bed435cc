package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/shoal-project/shoal/bootsvc"
	"github.com/shoal-project/shoal/cluster"
	"github.com/shoal-project/shoal/node"
	"github.com/shoal-project/shoal/transfer"
)

// serverDefaults is every server key with its default: viper only maps
// SHOAL_* variables onto keys it already knows, so each key needs one.
func serverDefaults() map[string]any {
	d := cluster.DefaultConfig()
	bd := node.DefaultBootConfig()
	return map[string]any{
		"node-name":          defaultNodeName(),
		"data-dir":           "./shoal-data",
		"http-addr":          d.HTTPAddr,
		"raft-addr":          d.RaftAddr,
		"gossip-addr":        d.GossipAddr,
		"advertise":          "",
		"join":               []string{},
		"bootstrap-expect":   1,
		"dead-server-grace":  d.DeadServerGrace,
		"max-voters":         d.MaxVoters,
		"stabilization-time": d.StabilizationTime,
		"snapshot-threshold": d.SnapshotThreshold,
		"snapshot-interval":  d.SnapshotInterval,
		"write-timeout":      d.WriteTimeout,
		"torrent-addr":       transfer.DefaultConfig().ListenAddr,
		"import-dir":         "",
		"blob-gc-grace":      transfer.DefaultConfig().GCGrace,
		"log-level":          "info",
		"log-format":         "text",
		"boot-interface":     "",
		"boot-address":       "",
		"dhcp-mode":          string(bd.DHCP.Mode),
		"dhcp-range":         "",
		"dhcp-router":        "",
		"dhcp-dns":           []string{},
		"dhcp-lease-time":    bd.DHCP.LeaseTime,
		"boot-unknown":       string(bd.DHCP.Unknown),
		"boot-default-group": "",
		"tftp-root":          bd.TFTP.Root,
		"boot-ra":            bd.RA,
		"nbd-addr":           "",
	}
}

// defaultNodeName is the host name made into a valid node name.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "shoal-1"
	}
	h = strings.ToLower(strings.SplitN(h, ".", 2)[0])
	h = regexp.MustCompile(`[^a-z0-9._-]`).ReplaceAllString(h, "-")
	if h == "" || !regexp.MustCompile(`^[a-z0-9]`).MatchString(h) {
		return "shoal-1"
	}
	return h
}

func newServerCmd() *cobra.Command {
	cmd, _ := newServerCmdViper()
	return cmd
}

// newServerCmdViper also returns the command's viper, for tests.
func newServerCmdViper() (*cobra.Command, *viper.Viper) {
	v := viper.New()
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a server node (single-node cluster on loopback by default)",
		Long: `Run a shoal server node. With no flags it bootstraps a single-node cluster,
keeps its data in ./shoal-data and serves the API on 127.0.0.1:7480.

Settings come from flags, SHOAL_* environment variables (SHOAL_NODE_NAME,
SHOAL_JOIN="a:7946,b:7946", ...) and a YAML file given with --config, in that
order of precedence.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServer(cmd, v) },
	}
	f := cmd.Flags()
	d := serverDefaults()
	f.String("config", "", "YAML config file (keys are the flag names)")
	f.String("node-name", d["node-name"].(string), "this node's unique name")
	f.String("data-dir", d["data-dir"].(string), "where the raft log, snapshots and blobs live")
	f.String("http-addr", d["http-addr"].(string), "API address (host:port)")
	f.String("raft-addr", d["raft-addr"].(string), "raft address (host:port)")
	f.String("gossip-addr", d["gossip-addr"].(string), "gossip address, TCP and UDP (host:port)")
	f.String("advertise", "", "IP peers and clients use to reach this node when it binds 0.0.0.0")
	f.StringSlice("join", nil, "gossip address of any member (repeatable)")
	f.Int("bootstrap-expect", 1, "servers to wait for before the first election (default 1 without --join, 0 with)")
	f.Duration("dead-server-grace", d["dead-server-grace"].(time.Duration), "how long a node may be dead before it is removed from raft")
	f.Int("max-voters", d["max-voters"].(int), "raft voters; later servers are non-voters")
	f.Duration("stabilization-time", d["stabilization-time"].(time.Duration), "how long a new server must be healthy before it becomes a voter")
	f.Uint64("snapshot-threshold", d["snapshot-threshold"].(uint64), "log entries between raft snapshots")
	f.Duration("snapshot-interval", d["snapshot-interval"].(time.Duration), "how often to check whether to snapshot")
	f.Duration("write-timeout", d["write-timeout"].(time.Duration), "how long a write waits for a leader")
	f.String("torrent-addr", d["torrent-addr"].(string), "BitTorrent peer-wire address (host:port)")
	f.String("import-dir", "", "files below this dir may be imported with `image import --local` (empty: disabled)")
	f.Duration("blob-gc-grace", d["blob-gc-grace"].(time.Duration), "how long a blob no version needs is kept before it is deleted")
	f.String("boot-interface", "", "answer PXE boots on this interface: DHCP (67, 4011), TFTP (69), IPv6 RA (empty: off)")
	f.String("boot-address", "", "this node's IPv4 on the boot interface that clients use (default: the interface's first)")
	f.String("dhcp-mode", d["dhcp-mode"].(string), "proxy (boot info only, beside the site's DHCP server) or full (also addresses)")
	f.String("dhcp-range", "", "full mode: dynamic address pool A-B (e.g. 10.77.0.100-10.77.0.199)")
	f.String("dhcp-router", "", "full mode: default gateway handed to clients")
	f.StringSlice("dhcp-dns", nil, "full mode: DNS servers handed to clients (repeatable)")
	f.Duration("dhcp-lease-time", d["dhcp-lease-time"].(time.Duration), "full mode: lease time")
	f.String("boot-unknown", d["boot-unknown"].(string), "unknown MACs: ignore, or default-group (boot --boot-default-group)")
	f.String("boot-default-group", "", "group unknown machines boot with --boot-unknown default-group")
	f.String("tftp-root", d["tftp-root"].(string), "directory of first-stage iPXE binaries served over TFTP (Debian package ipxe)")
	f.String("nbd-addr", "", "export image versions read-only over NBD here (default: <boot address>:10809 with --boot-interface; \"off\")")
	f.Bool("boot-ra", true, "answer IPv6 router solicitations on the boot interface (spares iPXE a ~16 s wait)")
	f.String("log-level", "info", "debug, info, warn or error")
	f.String("log-format", "text", "text or json")
	for k, val := range d {
		// bootstrap-expect has no viper default on purpose: its default
		// depends on --join, and IsSet must tell "unset" from "set to 1".
		if k != "bootstrap-expect" {
			v.SetDefault(k, val)
		}
	}
	v.SetEnvPrefix("SHOAL")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(f); err != nil {
		panic(err)
	}
	return cmd, v
}

// readConfigFile merges the --config YAML file, if any, under flags and env.
func readConfigFile(v *viper.Viper) error {
	path := v.GetString("config")
	if path == "" {
		return nil
	}
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	return checkConfigKeys(path)
}

// checkConfigKeys refuses keys that are no flag: viper would ignore a typo
// such as bootstrap_expect and the node would start with the default.
func checkConfigKeys(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	known := serverDefaults()
	var bad []string
	for k := range m {
		if _, ok := known[k]; !ok && k != "config" {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("config file %s: unknown keys %s (keys are the flag names, e.g. bootstrap-expect)", path, strings.Join(bad, ", "))
	}
	return nil
}

func runServer(cmd *cobra.Command, v *viper.Viper) error {
	if err := readConfigFile(v); err != nil {
		return err
	}
	log, err := newLogger(v.GetString("log-level"), v.GetString("log-format"), v.GetString("node-name"))
	if err != nil {
		return err
	}
	cfg := serverConfig(v)
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Listening = func(a node.Addrs) {
		fmt.Fprintf(cmd.OutOrStdout(), "shoal server %s listening: http=http://%s raft=%s gossip=%s torrent=%s data=%s\n",
			cfg.Cluster.NodeName, a.HTTP, a.Raft, a.Gossip, a.Torrent, cfg.Cluster.DataDir)
		if a.Boot != "" {
			fmt.Fprintf(cmd.OutOrStdout(), "shoal server %s boot services: %s\n", cfg.Cluster.NodeName, a.Boot)
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return n.Run(ctx)
}

func serverConfig(v *viper.Viper) node.Config {
	c := cluster.DefaultConfig()
	c.NodeName = v.GetString("node-name")
	c.DataDir = v.GetString("data-dir")
	c.HTTPAddr = v.GetString("http-addr")
	c.RaftAddr = v.GetString("raft-addr")
	c.GossipAddr = v.GetString("gossip-addr")
	c.Advertise = v.GetString("advertise")
	c.Join = splitList(v.GetStringSlice("join"))
	c.BootstrapExpect = v.GetInt("bootstrap-expect")
	if !v.IsSet("bootstrap-expect") && len(c.Join) > 0 {
		c.BootstrapExpect = 0 // joining an existing cluster: wait to be added
	}
	c.DeadServerGrace = v.GetDuration("dead-server-grace")
	c.MaxVoters = v.GetInt("max-voters")
	c.StabilizationTime = v.GetDuration("stabilization-time")
	c.SnapshotThreshold = v.GetUint64("snapshot-threshold")
	c.SnapshotInterval = v.GetDuration("snapshot-interval")
	c.WriteTimeout = v.GetDuration("write-timeout")
	t := transfer.DefaultConfig()
	t.ListenAddr = v.GetString("torrent-addr")
	t.GCGrace = v.GetDuration("blob-gc-grace")
	return node.Config{Cluster: c, Transfer: t, ImportDir: v.GetString("import-dir"), Boot: bootConfig(v)}
}

func bootConfig(v *viper.Viper) node.BootConfig {
	b := node.DefaultBootConfig()
	b.Interface = v.GetString("boot-interface")
	b.Address = v.GetString("boot-address")
	b.DHCP.Mode = bootsvc.Mode(v.GetString("dhcp-mode"))
	if r := v.GetString("dhcp-range"); r != "" {
		b.DHCP.RangeStart, b.DHCP.RangeEnd, _ = strings.Cut(r, "-")
		if b.DHCP.RangeEnd == "" {
			b.DHCP.RangeEnd = "(missing: want A-B)"
		}
	}
	b.DHCP.Router = v.GetString("dhcp-router")
	b.DHCP.DNS = splitList(v.GetStringSlice("dhcp-dns"))
	b.DHCP.LeaseTime = v.GetDuration("dhcp-lease-time")
	b.DHCP.Unknown = bootsvc.UnknownPolicy(v.GetString("boot-unknown"))
	b.DHCP.DefaultGroup = v.GetString("boot-default-group")
	b.TFTP.Root = v.GetString("tftp-root")
	b.RA = v.GetBool("boot-ra")
	b.NBDAddr = v.GetString("nbd-addr")
	return b
}

// splitList accepts both repeated flags and comma lists (SHOAL_JOIN="a,b").
func splitList(in []string) []string {
	var out []string
	for _, s := range in {
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func newLogger(level, format, name string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(os.Stderr, opts)
	case "json":
		h = slog.NewJSONHandler(os.Stderr, opts)
	default:
		return nil, fmt.Errorf("log-format %q: use text or json", format)
	}
	return slog.New(h).With("node", name), nil
}

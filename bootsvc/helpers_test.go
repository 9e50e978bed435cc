package bootsvc

import (
	"strings"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// The real replica must satisfy the interface the package asks for.
var _ Catalog = (*catalog.State)(nil)

// fakeCatalog is a map-backed Catalog; it stores whatever a test puts in,
// including values the real catalogue would refuse (hostile hostnames), to
// prove the boot code does not rely on catalogue validation alone.
type fakeCatalog struct {
	clients map[string]catalog.Client
	groups  map[string]catalog.Group
	images  map[string]catalog.Image
}

func (f *fakeCatalog) Client(mac string) (catalog.Client, bool) {
	m, err := catalog.NormalizeMAC(mac)
	if err != nil {
		return catalog.Client{}, false
	}
	c, ok := f.clients[m]
	return c, ok
}

func (f *fakeCatalog) Group(name string) (catalog.Group, bool) {
	g, ok := f.groups[name]
	return g, ok
}

func (f *fakeCatalog) Image(name string) (catalog.Image, bool) {
	im, ok := f.images[name]
	return im, ok
}

// Test identities.
const (
	macKnown    = "aa:bb:cc:00:00:01" // pc1, fixed IP 10.77.0.11
	macNoIP     = "aa:bb:cc:00:00:02" // pc2, no fixed IP
	macFar      = "aa:bb:cc:00:00:03" // pc3, fixed IP outside the subnet
	macUnknown  = "aa:bb:cc:00:00:99"
	testServer  = "10.77.0.1"
	testBase    = "http://10.77.0.1:7480"
	testKernel  = "1111111111111111111111111111111111111111111111111111111111111111"
	testInitrd  = "2222222222222222222222222222222222222222222222222222222222222222"
	testVersion = "3333333333333333333333333333333333333333333333333333333333333333"
	oldVersion  = "4444444444444444444444444444444444444444444444444444444444444444"
	oldKernel   = "5555555555555555555555555555555555555555555555555555555555555555"
)

func newFakeCatalog() *fakeCatalog {
	return &fakeCatalog{
		clients: map[string]catalog.Client{
			macKnown: {MAC: macKnown, Hostname: "pc1", Group: "lab", IP: "10.77.0.11", KernelArgs: "quiet systemd.unit=multi-user.target"},
			macNoIP:  {MAC: macNoIP, Hostname: "pc2", Group: "lab"},
			macFar:   {MAC: macFar, Hostname: "pc3", Group: "lab", IP: "192.168.9.9"},
		},
		groups: map[string]catalog.Group{
			"lab":     {Name: "lab", Image: "deb", BootMode: catalog.BootDisklessRAM, KernelArgs: "console=ttyS0"},
			"guests":  {Name: "guests", Image: "deb", Version: oldVersion, BootMode: catalog.BootDisklessNBD},
			"noimage": {Name: "noimage", BootMode: catalog.BootDisk},
		},
		images: map[string]catalog.Image{
			"deb": {Name: "deb", Current: testVersion, Versions: []catalog.ImageVersion{
				{ID: oldVersion, KernelBlob: oldKernel, Format: catalog.FormatSquashfs},
				{ID: testVersion, KernelBlob: testKernel, InitrdBlob: testInitrd, Cmdline: "panic=-1", Format: catalog.FormatSquashfs},
			}},
		},
	}
}

// lines splits a script for readable failure output.
func lines(s string) []string { return strings.Split(strings.TrimSuffix(s, "\n"), "\n") }

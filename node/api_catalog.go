package node

import (
	"fmt"
	"net/http"

	"github.com/shoal-project/shoal/cluster/catalog"
)

// The catalogue endpoints: each write decodes, proposes, then answers with
// the object as this node's replica now holds it.

func (a *api) listGroups(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nonNil(a.cat.Groups()), nil
}

func (a *api) getGroup(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	return found(a.cat.Group(r.PathValue("name")))("group", r.PathValue("name"))
}

func (a *api) createGroup(r *http.Request) (int, any, error) {
	var g catalog.Group
	if err := decode(r, &g); err != nil {
		return 0, nil, err
	}
	if err := a.write(r, catalog.CmdGroupCreate, g); err != nil {
		return 0, nil, err
	}
	return created(a.cat.Group(g.Name))
}

func (a *api) updateGroup(r *http.Request) (int, any, error) {
	var g catalog.Group
	if err := decode(r, &g); err != nil {
		return 0, nil, err
	}
	if err := samePathName(&g.Name, r.PathValue("name"), "name"); err != nil {
		return 0, nil, err
	}
	if err := a.write(r, catalog.CmdGroupUpdate, g); err != nil {
		return 0, nil, err
	}
	return ok(a.cat.Group(g.Name))
}

func (a *api) deleteGroup(r *http.Request) (int, any, error) {
	err := a.write(r, catalog.CmdGroupDelete, catalog.NameRef{Name: r.PathValue("name")})
	return http.StatusNoContent, nil, err
}

func (a *api) listClients(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	if g := r.URL.Query().Get("group"); g != "" {
		return http.StatusOK, nonNil(a.cat.ClientsInGroup(g)), nil
	}
	return http.StatusOK, nonNil(a.cat.Clients()), nil
}

func (a *api) getClient(r *http.Request) (int, any, error) {
	mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return 0, nil, err
	}
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	c, ok := a.cat.Client(mac)
	if !ok {
		return found(c, ok)("client", mac)
	}
	v := ClientView{Client: c, LastBoot: a.lastBoot(r.Context(), mac)}
	if l, ok := a.cat.Lease(mac); ok {
		v.Lease = &l
	}
	return http.StatusOK, v, nil
}

// ClientView is GET /v1/clients/{mac}: the catalogue entry, its dynamic
// lease if it has one, and its last boot as every live node saw it, most
// recent first.
type ClientView struct {
	catalog.Client
	Lease    *catalog.Lease `json:"lease,omitempty"`
	LastBoot []BootRecord   `json:"last_boot"`
}

func (a *api) listLeases(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, nonNil(a.cat.Leases()), nil
}

func (a *api) createClient(r *http.Request) (int, any, error) {
	var c catalog.Client
	if err := decode(r, &c); err != nil {
		return 0, nil, err
	}
	if err := a.write(r, catalog.CmdClientCreate, c); err != nil {
		return 0, nil, err
	}
	return created(a.cat.Client(c.MAC))
}

func (a *api) updateClient(r *http.Request) (int, any, error) {
	var c catalog.Client
	if err := decode(r, &c); err != nil {
		return 0, nil, err
	}
	mac, err := catalog.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		return 0, nil, err
	}
	if c.MAC != "" {
		if body, err := catalog.NormalizeMAC(c.MAC); err != nil || body != mac {
			return 0, nil, fmt.Errorf("body mac %q differs from path mac %q: %w", c.MAC, mac, catalog.ErrInvalid)
		}
	}
	c.MAC = mac
	if err := a.write(r, catalog.CmdClientUpdate, c); err != nil {
		return 0, nil, err
	}
	return ok(a.cat.Client(mac))
}

func (a *api) deleteClient(r *http.Request) (int, any, error) {
	err := a.write(r, catalog.CmdClientDelete, catalog.MACRef{MAC: r.PathValue("mac")})
	return http.StatusNoContent, nil, err
}

func (a *api) listImages(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	have := a.holders(r.Context())
	views := []imageView{}
	for _, im := range a.cat.Images() {
		views = append(views, a.view(im, have))
	}
	return http.StatusOK, views, nil
}

func (a *api) getImage(r *http.Request) (int, any, error) {
	if err := a.consistent(r); err != nil {
		return 0, nil, err
	}
	im, ok := a.cat.Image(r.PathValue("name"))
	if !ok {
		return 0, nil, fmt.Errorf("image %q: %w", r.PathValue("name"), catalog.ErrNotFound)
	}
	return http.StatusOK, a.view(im, a.holders(r.Context())), nil
}

func (a *api) deleteImage(r *http.Request) (int, any, error) {
	err := a.write(r, catalog.CmdImageDelete, catalog.NameRef{Name: r.PathValue("name")})
	return http.StatusNoContent, nil, err
}

// versionRequest is the body of POST /v1/images/{name}/versions: the
// version's metadata plus whether it becomes current.
type versionRequest struct {
	catalog.ImageVersion
	Activate bool `json:"activate"`
}

func (a *api) addImageVersion(r *http.Request) (int, any, error) {
	var req versionRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	body := catalog.ImageVersionAdd{Image: name, Version: req.ImageVersion, Activate: req.Activate}
	if err := a.write(r, catalog.CmdImageVersionAdd, body); err != nil {
		return 0, nil, err
	}
	return created(a.cat.Image(name))
}

func (a *api) removeImageVersion(r *http.Request) (int, any, error) {
	ref := catalog.ImageVersionRef{Image: r.PathValue("name"), Version: r.PathValue("version")}
	return http.StatusNoContent, nil, a.write(r, catalog.CmdImageVersionRemove, ref)
}

func (a *api) activateImage(r *http.Request) (int, any, error) {
	var req struct {
		Version string `json:"version"`
	}
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	name := r.PathValue("name")
	if err := a.checkHeld(r, name, req.Version); err != nil {
		return 0, nil, err
	}
	if err := a.write(r, catalog.CmdImageActivate, catalog.ImageVersionRef{Image: name, Version: req.Version}); err != nil {
		return 0, nil, err
	}
	return ok(a.cat.Image(name))
}

func samePathName(body *string, path, field string) error {
	if *body != "" && *body != path {
		return fmt.Errorf("body %s %q differs from the path's %q: %w", field, *body, path, catalog.ErrInvalid)
	}
	*body = path
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func found[T any](v T, ok bool) func(kind, key string) (int, any, error) {
	return func(kind, key string) (int, any, error) {
		if !ok {
			return 0, nil, fmt.Errorf("%s %q: %w", kind, key, catalog.ErrNotFound)
		}
		return http.StatusOK, v, nil
	}
}

func ok[T any](v T, found bool) (int, any, error) {
	if !found {
		return 0, nil, fmt.Errorf("written but not visible on this replica: %w", catalog.ErrNotFound)
	}
	return http.StatusOK, v, nil
}

func created[T any](v T, found bool) (int, any, error) {
	code, body, err := ok(v, found)
	if err == nil {
		code = http.StatusCreated
	}
	return code, body, err
}

// checkHeld refuses to make current a version whose bytes no live node
// holds completely (say an old version removed from every disk): clients
// would be sent to boot something nobody can serve.
func (a *api) checkHeld(r *http.Request, name, version string) error {
	im, ok := a.cat.Image(name)
	if !ok {
		return nil // the command reports the unknown image
	}
	for _, v := range im.Versions {
		if v.ID == version && len(v.Blobs) > 0 && len(a.view(im, a.holders(r.Context())).Holders[v.ID]) == 0 {
			return fmt.Errorf("image %s version %s: no live node holds it completely; re-import it first: %w", name, version, catalog.ErrConflict)
		}
	}
	return nil
}

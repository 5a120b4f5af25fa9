package ruler

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/prometheus/prometheus/model/rulefmt"
	"go.yaml.in/yaml/v3"

	"github.com/isobar-tsdb/isobar/tsdb/bucket"
	"github.com/isobar-tsdb/isobar/tsdb/bucketindex"
)

// ErrReadOnly is the error of a write to rules kept in a directory.
var ErrReadOnly = errors.New("the rules are read from a directory (-ruler-storage.local.directory) and cannot be changed through the API; change the files")

// errNotFound is the error of a namespace or group that does not exist.
var errNotFound = errors.New("not found")

// Store keeps each tenant's rule groups, by namespace.
type Store interface {
	// Tenants lists the tenants that may have rules.
	Tenants(ctx context.Context) ([]string, error)
	// Groups returns the tenant's groups by namespace, each namespace's
	// groups in name order.
	Groups(ctx context.Context, tenant string) (map[string][]rulefmt.RuleGroup, error)
	// GroupNames returns the names of the tenant's groups by namespace,
	// without reading the groups.
	GroupNames(ctx context.Context, tenant string) (map[string][]string, error)
	// SetGroup stores a group in a namespace, replacing the group of its
	// name there.
	SetGroup(ctx context.Context, tenant, namespace string, g rulefmt.RuleGroup) error
	// DeleteGroup removes a group; errNotFound if there is none.
	DeleteGroup(ctx context.Context, tenant, namespace, group string) error
	// DeleteNamespace removes a namespace's groups; errNotFound if none.
	DeleteNamespace(ctx context.Context, tenant, namespace string) error
}

// validNamespace is what a namespace may be: it becomes part of object
// names and file names, so no path characters.
var validNamespace = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$`)

// checkNamespace refuses namespaces that are not names.
func checkNamespace(ns string) error {
	if !validNamespace.MatchString(ns) {
		return fmt.Errorf("invalid namespace %q: use letters, digits, '_', '.', ':' and '-' (not first), at most 200", ns)
	}
	return nil
}

// BucketStore keeps rule groups in the bucket, one object a group:
// <tenant>/rules/<namespace>/<group name, base64url>.yaml. Blocks live
// beside them under <tenant>/<ULID>/, and whatever reads blocks skips
// names that are not ULIDs.
type BucketStore struct{ bkt bucket.Bucket }

// NewBucketStore returns a store in bkt.
func NewBucketStore(bkt bucket.Bucket) *BucketStore { return &BucketStore{bkt: bkt} }

func rulesDir(tenant string) string { return tenant + "/rules/" }

func groupObject(tenant, ns, group string) string {
	return rulesDir(tenant) + ns + "/" + base64.RawURLEncoding.EncodeToString([]byte(group)) + ".yaml"
}

func (s *BucketStore) Tenants(ctx context.Context) ([]string, error) {
	return bucketindex.Tenants(ctx, s.bkt)
}

// groupObjects lists the group objects of a tenant: namespace, group name
// and object name of each.
func (s *BucketStore) groupObjects(ctx context.Context, tenant string) ([][3]string, error) {
	var out [][3]string
	err := s.bkt.Iter(ctx, rulesDir(tenant), true, func(name string) error {
		ns, file, ok := strings.Cut(strings.TrimPrefix(name, rulesDir(tenant)), "/")
		if !ok || !strings.HasSuffix(file, ".yaml") || checkNamespace(ns) != nil {
			return nil // not ours
		}
		group, err := base64.RawURLEncoding.DecodeString(strings.TrimSuffix(file, ".yaml"))
		if err != nil {
			return nil // not ours
		}
		out = append(out, [3]string{ns, string(group), name})
		return nil
	})
	if err != nil && !bucket.IsNotFound(err) {
		return nil, err
	}
	return out, nil
}

func (s *BucketStore) GroupNames(ctx context.Context, tenant string) (map[string][]string, error) {
	objects, err := s.groupObjects(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, o := range objects {
		out[o[0]] = append(out[o[0]], o[1])
	}
	return out, nil
}

// readConcurrency is how many group objects Groups reads at once: a
// tenant's thousand groups are then a few round trips to S3, not a
// thousand in a row.
const readConcurrency = 16

func (s *BucketStore) Groups(ctx context.Context, tenant string) (map[string][]rulefmt.RuleGroup, error) {
	objects, err := s.groupObjects(ctx, tenant)
	if err != nil {
		return nil, err
	}
	groups := make([]rulefmt.RuleGroup, len(objects))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(readConcurrency)
	for i, o := range objects {
		g.Go(func() error {
			rg, err := s.readGroup(gctx, o[2])
			if err != nil {
				return fmt.Errorf("read rule group %s: %w", o[2], err)
			}
			groups[i] = rg
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := map[string][]rulefmt.RuleGroup{}
	for i, o := range objects {
		out[o[0]] = append(out[o[0]], groups[i])
	}
	for ns := range out {
		slices.SortFunc(out[ns], func(a, b rulefmt.RuleGroup) int { return strings.Compare(a.Name, b.Name) })
	}
	return out, nil
}

func (s *BucketStore) readGroup(ctx context.Context, name string) (rulefmt.RuleGroup, error) {
	r, err := s.bkt.Get(ctx, name)
	if err != nil {
		return rulefmt.RuleGroup{}, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return rulefmt.RuleGroup{}, err
	}
	var g rulefmt.RuleGroup
	if err := yaml.Unmarshal(b, &g); err != nil {
		return rulefmt.RuleGroup{}, err
	}
	return g, nil
}

func (s *BucketStore) SetGroup(ctx context.Context, tenant, ns string, g rulefmt.RuleGroup) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	b, err := yaml.Marshal(g)
	if err != nil {
		return fmt.Errorf("encode rule group %q: %w", g.Name, err)
	}
	return s.bkt.Upload(ctx, groupObject(tenant, ns, g.Name), bytes.NewReader(b))
}

func (s *BucketStore) DeleteGroup(ctx context.Context, tenant, ns, group string) error {
	name := groupObject(tenant, ns, group)
	ok, err := s.bkt.Exists(ctx, name)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
	}
	return s.bkt.Delete(ctx, name)
}

func (s *BucketStore) DeleteNamespace(ctx context.Context, tenant, ns string) error {
	if err := checkNamespace(ns); err != nil {
		return err
	}
	var names []string
	err := s.bkt.Iter(ctx, rulesDir(tenant)+ns+"/", true, func(name string) error {
		names = append(names, name)
		return nil
	})
	if err != nil && !bucket.IsNotFound(err) {
		return err
	}
	if len(names) == 0 {
		return errNotFound
	}
	for _, n := range names {
		if err := s.bkt.Delete(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// DirStore reads rule files kept elsewhere (in git, by configuration
// management): <dir>/<tenant>/<namespace>.yaml, each a Prometheus rule
// file. It refuses every change.
type DirStore struct{ dir string }

// NewDirStore returns a store reading dir.
func NewDirStore(dir string) *DirStore { return &DirStore{dir: dir} }

func (s *DirStore) Tenants(context.Context) ([]string, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list rule directory: %w", err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s *DirStore) Groups(_ context.Context, tenant string) (map[string][]rulefmt.RuleGroup, error) {
	files, err := filepath.Glob(filepath.Join(s.dir, tenant, "*.yaml"))
	if err != nil {
		return nil, err
	}
	out := map[string][]rulefmt.RuleGroup{}
	for _, f := range files {
		ns := strings.TrimSuffix(filepath.Base(f), ".yaml")
		if checkNamespace(ns) != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read rule file: %w", err)
		}
		var rgs rulefmt.RuleGroups
		if err := yaml.Unmarshal(b, &rgs); err != nil {
			return nil, fmt.Errorf("rule file %s: %w", f, err)
		}
		groups := rgs.Groups
		slices.SortFunc(groups, func(a, b rulefmt.RuleGroup) int { return strings.Compare(a.Name, b.Name) })
		out[ns] = groups
	}
	return out, nil
}

func (s *DirStore) GroupNames(ctx context.Context, tenant string) (map[string][]string, error) {
	groups, err := s.Groups(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for ns, gs := range groups {
		for _, g := range gs {
			out[ns] = append(out[ns], g.Name)
		}
	}
	return out, nil
}

func (s *DirStore) SetGroup(context.Context, string, string, rulefmt.RuleGroup) error {
	return ErrReadOnly
}
func (s *DirStore) DeleteGroup(context.Context, string, string, string) error { return ErrReadOnly }
func (s *DirStore) DeleteNamespace(context.Context, string, string) error     { return ErrReadOnly }

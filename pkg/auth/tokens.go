package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/isobar-tsdb/isobar/pkg/tenant"
)

// TokensConfig names the file of bearer tokens and users.
type TokensConfig struct {
	File         string        `yaml:"file"`
	ReloadPeriod time.Duration `yaml:"reload_period"`
}

// RegisterFlags registers the tokens file's flags.
func (c *TokensConfig) RegisterFlags(f *flag.FlagSet) {
	f.StringVar(&c.File, "auth.tokens.file", "", "YAML file of callers (-auth.type=tokens): each with a name, a bearer token or a username and password, stored hashed (sha256:HEX or bcrypt:HASH), its tenants and rights. Read again as soon as it changes.")
	f.DurationVar(&c.ReloadPeriod, "auth.tokens.reload-period", 10*time.Second, "How often the tokens file is read again even without a notice of change from its directory (which reads it at once).")
}

// Validate checks the tokens configuration.
func (c *TokensConfig) Validate() error {
	if c.File == "" {
		return errors.New("-auth.type=tokens needs -auth.tokens.file")
	}
	if c.ReloadPeriod <= 0 {
		return errors.New("-auth.tokens.reload-period must be positive")
	}
	return nil
}

// tokensFile is the tokens file's shape.
type tokensFile struct {
	Callers []callerEntry `yaml:"callers"`
}

type callerEntry struct {
	Name string `yaml:"name"`
	// Token is a bearer token's hash; Username and Password a basic-auth
	// user's name and password hash.
	Token    string   `yaml:"token"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	Tenants  []string `yaml:"tenants"`
	Rights   []string `yaml:"rights"`
}

// tokenSet is one reading of the file.
type tokenSet struct {
	bearer map[[sha256.Size]byte]*Identity
	users  map[string]*user
}

type user struct {
	identity *Identity
	sha256   []byte // or
	bcrypt   []byte
	// verified holds the SHA-256 of a password bcrypt accepted, so the
	// next request costs a hash, not a bcrypt check.
	verified atomic.Pointer[[sha256.Size]byte]
}

// parseTokens reads a tokens file's content.
func parseTokens(data []byte) (*tokenSet, error) {
	var f tokensFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse: %w", err)
	}
	set := &tokenSet{bearer: map[[sha256.Size]byte]*Identity{}, users: map[string]*user{}}
	names := map[string]bool{}
	for i, c := range f.Callers {
		where := fmt.Sprintf("caller %d (%q)", i+1, c.Name)
		if c.Name == "" {
			return nil, fmt.Errorf("caller %d has no name", i+1)
		}
		if names[c.Name] {
			return nil, fmt.Errorf("%s: the name is used twice", where)
		}
		names[c.Name] = true
		rights, err := parseRights(c.Rights)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if rights == 0 {
			return nil, fmt.Errorf("%s has no rights", where)
		}
		id := &Identity{Caller: c.Name}
		for _, t := range c.Tenants {
			if err := tenant.Validate(t); err != nil {
				return nil, fmt.Errorf("%s: tenant %q: %w", where, t, err)
			}
			id.Grants = append(id.Grants, Grant{Tenant: t, Rights: rights})
		}
		if len(id.Grants) == 0 {
			if rights != Admin {
				return nil, fmt.Errorf("%s has rights %s but no tenant", where, rights)
			}
			id.Grants = []Grant{{Rights: Admin}} // an operator's: no tenant
		}
		switch {
		case c.Token != "" && c.Username == "" && c.Password == "":
			algo, sum, err := parseHash(c.Token)
			if err != nil {
				return nil, fmt.Errorf("%s: token: %w", where, err)
			}
			if algo != "sha256" {
				return nil, fmt.Errorf("%s: a token's hash must be sha256:HEX (a token is long and random: bcrypt would only slow every request)", where)
			}
			key := [sha256.Size]byte(sum)
			if _, dup := set.bearer[key]; dup {
				return nil, fmt.Errorf("%s: the same token as another caller", where)
			}
			set.bearer[key] = id
		case c.Token == "" && c.Username != "" && c.Password != "":
			if _, dup := set.users[c.Username]; dup {
				return nil, fmt.Errorf("%s: username %q is used twice", where, c.Username)
			}
			algo, sum, err := parseHash(c.Password)
			if err != nil {
				return nil, fmt.Errorf("%s: password: %w", where, err)
			}
			u := &user{identity: id}
			if algo == "sha256" {
				u.sha256 = sum
			} else {
				u.bcrypt = sum
			}
			set.users[c.Username] = u
		default:
			return nil, fmt.Errorf("%s needs either a token or a username and a password", where)
		}
	}
	return set, nil
}

// parseHash reads sha256:HEX or bcrypt:HASH.
func parseHash(s string) (string, []byte, error) {
	algo, v, ok := strings.Cut(s, ":")
	switch {
	case ok && algo == "sha256":
		sum, err := hex.DecodeString(v)
		if err != nil || len(sum) != sha256.Size {
			return "", nil, errors.New("sha256: needs 64 hexadecimal digits (printf %s SECRET | sha256sum)")
		}
		return algo, sum, nil
	case ok && algo == "bcrypt":
		if _, err := bcrypt.Cost([]byte(v)); err != nil {
			return "", nil, fmt.Errorf("bcrypt: %w", err)
		}
		return algo, []byte(v), nil
	}
	return "", nil, errors.New("store the secret hashed, as sha256:HEX or bcrypt:HASH, never as it is")
}

func (s *tokenSet) authenticate(c credential) (*Identity, *Failure) {
	switch c.kind {
	case bearerCredential:
		if id := s.bearer[hashSecret(c.secret)]; id != nil {
			return id, nil
		}
		return nil, unauthenticated(ReasonUnknown, "the bearer token is not known")
	case basicCredential:
		u := s.users[c.user]
		if u == nil {
			return nil, unauthenticated(ReasonUnknown, "wrong username or password")
		}
		sum := hashSecret(c.secret)
		if u.sha256 != nil {
			if subtle.ConstantTimeCompare(sum[:], u.sha256) == 1 {
				return u.identity, nil
			}
			return nil, unauthenticated(ReasonUnknown, "wrong username or password")
		}
		if v := u.verified.Load(); v != nil && subtle.ConstantTimeCompare(sum[:], v[:]) == 1 {
			return u.identity, nil
		}
		if bcrypt.CompareHashAndPassword(u.bcrypt, []byte(c.secret)) != nil {
			return nil, unauthenticated(ReasonUnknown, "wrong username or password")
		}
		u.verified.Store(&sum)
		return u.identity, nil
	}
	return nil, unauthenticated(ReasonMissing, "no credential: send a bearer token or basic auth")
}

// tokens authenticates callers listed in a file and reads the file again
// when it changes.
type tokens struct {
	cfg    TokensConfig
	logger *slog.Logger
	set    atomic.Pointer[tokenSet]

	mu   sync.Mutex
	last []byte // the content in force
	// reloaded is 1 when the last reading was taken, 0 when refused.
	reloaded prometheus.Gauge
}

func newTokens(cfg TokensConfig, logger *slog.Logger, reloaded prometheus.Gauge) (*tokens, error) {
	t := &tokens{cfg: cfg, logger: logger, reloaded: reloaded}
	if err := t.reload(); err != nil {
		return nil, err
	}
	reloaded.Set(1)
	return t, nil
}

func (t *tokens) authenticate(_ context.Context, c credential) (*Identity, *Failure) {
	return t.set.Load().authenticate(c)
}

// reload reads the file if its content changed; a file that does not read
// or parse leaves the last good one in force.
func (t *tokens) reload() error {
	data, err := os.ReadFile(t.cfg.File)
	if err != nil {
		return fmt.Errorf("read the tokens file -auth.tokens.file: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last != nil && bytes.Equal(data, t.last) {
		return nil
	}
	set, err := parseTokens(data)
	if err != nil {
		return fmt.Errorf("tokens file %s: %w", t.cfg.File, err)
	}
	t.set.Store(set)
	t.last = data
	t.logger.Info("tokens file loaded", "file", t.cfg.File, "bearer_tokens", len(set.bearer), "users", len(set.users))
	return nil
}

// run reads the file again when its directory says it changed (a file
// replaced by a rename included), and every reload period in case no
// notice comes (some filesystems give none), until ctx ends.
func (t *tokens) run(ctx context.Context) {
	tick := time.NewTicker(t.cfg.ReloadPeriod)
	defer tick.Stop()
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w, err := fsnotify.NewWatcher(); err != nil {
		t.logger.Warn("cannot watch the tokens file; it is read every reload period", "err", err)
	} else {
		defer w.Close()
		if err := w.Add(filepath.Dir(t.cfg.File)); err != nil {
			t.logger.Warn("cannot watch the tokens file's directory; the file is read every reload period", "err", err)
		}
		events, watchErrs = w.Events, w.Errors
	}
	file := filepath.Clean(t.cfg.File)
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if filepath.Clean(ev.Name) != file {
				continue
			}
		case err := <-watchErrs:
			t.logger.Warn("watching the tokens file", "err", err)
			continue
		case <-tick.C:
		}
		if err := t.reload(); err != nil {
			t.logger.Error("tokens file refused; the last good one stays in force", "err", err)
			t.reloaded.Set(0)
		} else {
			t.reloaded.Set(1)
		}
	}
}

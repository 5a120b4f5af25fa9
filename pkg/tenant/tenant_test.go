package tenant

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		id      string
		wantErr string
	}{
		{id: "team-a"},
		{id: "Team_A.prod(1)*!'"},
		{id: strings.Repeat("a", MaxLength)},
		{id: "", wantErr: "empty"},
		{id: ".", wantErr: `"." or ".."`},
		{id: "..", wantErr: `"." or ".."`},
		{id: ".tmp-x", wantErr: `must not start with "."`},
		{id: ".hidden", wantErr: `must not start with "."`},
		{id: "a.b."},
		{id: "a/b", wantErr: `unsupported character '/'`},
		{id: `a\b`, wantErr: "unsupported character"},
		{id: "a b", wantErr: "unsupported character"},
		{id: "tenant|other", wantErr: "unsupported character"},
		{id: "é", wantErr: "unsupported character"},
		{id: strings.Repeat("a", MaxLength+1), wantErr: "more than the limit"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			err := Validate(tc.id)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestMiddleware(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := From(r.Context())
		require.NoError(t, err)
		_, _ = w.Write([]byte(id))
	})
	for _, tc := range []struct {
		name         string
		multitenancy bool
		header       string
		wantCode     int
		wantBody     string
	}{
		{name: "off ignores header", multitenancy: false, header: "team-a", wantCode: 200, wantBody: Anonymous},
		{name: "off without header", multitenancy: false, wantCode: 200, wantBody: Anonymous},
		{name: "on with header", multitenancy: true, header: "team-a", wantCode: 200, wantBody: "team-a"},
		{name: "on without header", multitenancy: true, wantCode: 401, wantBody: "no tenant ID"},
		{name: "on with path traversal", multitenancy: true, header: "..", wantCode: 400, wantBody: "invalid X-Scope-OrgID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.header != "" {
				req.Header.Set(HeaderName, tc.header)
			}
			rec := httptest.NewRecorder()
			Middleware(tc.multitenancy, echo).ServeHTTP(rec, req)
			require.Equal(t, tc.wantCode, rec.Code)
			require.Contains(t, rec.Body.String(), tc.wantBody)
		})
	}
}

func TestFromMissing(t *testing.T) {
	_, err := From(t.Context())
	require.Error(t, err)
}

// FuzzValidate checks that every accepted tenant ID is safe to use as one
// path component.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"anonymous", "..", ".", "a/b", "", "team-1", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if Validate(id) != nil {
			return
		}
		require.NotEmpty(t, id)
		require.LessOrEqual(t, len(id), MaxLength)
		require.NotContains(t, id, "/")
		require.NotContains(t, id, "\\")
		require.NotContains(t, id, "\x00")
		require.NotEqual(t, ".", id)
		require.NotEqual(t, "..", id)
	})
}

func TestValidateMany(t *testing.T) {
	require.NoError(t, ValidateMany("team-a"))
	require.NoError(t, ValidateMany("team-a|team-b"))
	require.ErrorContains(t, ValidateMany("team-a|"), "tenant 2 of 2: tenant ID is empty")
	require.ErrorContains(t, ValidateMany("a|b/c"), "tenant 2 of 2")
	require.ErrorContains(t, ValidateMany(strings.Repeat("a|", MaxFederated)+"a"), "more than the limit of 100")
	require.ErrorContains(t, ValidateMany("a/b"), "unsupported character", "one tenant is checked as Validate checks it")
}

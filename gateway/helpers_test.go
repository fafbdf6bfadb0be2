package gateway

import (
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
)

// env is a gateway over a real store in a temporary directory, served on
// a loopback listener.
type env struct {
	t     *testing.T
	store *cache.Store
	srv   *httptest.Server
	h     *Handler
}

const testPassword = "secret"

func newEnv(t *testing.T, opts ...func(*Options)) *env {
	t.Helper()
	st, err := cache.Open(filepath.Join(t.TempDir(), "calgate.db"), cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	hash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Store:  st,
		Users:  []User{{Name: "alice", PasswordHash: string(hash)}, {Name: "bob", PasswordHash: string(hash)}},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, f := range opts {
		f(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, u := range []string{"alice", "bob"} {
		if _, err := st.CreateCalendar(cache.Calendar{User: u, ID: "personal", DisplayName: "Personal",
			Components: []string{"VEVENT", "VTODO", "VJOURNAL"}}); err != nil {
			t.Fatal(err)
		}
	}
	return &env{t: t, store: st, srv: srv, h: h}
}

// do sends a request as user (empty: no credentials).
func (e *env) do(user, method, path, body string, hdr ...string) *http.Response {
	e.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, r)
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, testPassword)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func wantStatus(t *testing.T, resp *http.Response, code int) {
	t.Helper()
	if resp.StatusCode != code {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: status %d, want %d; body:\n%s", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, code, b)
	}
}

// Decoded multistatus (RFC 4918 §14.16).
type msResp struct {
	XMLName   xml.Name     `xml:"DAV: multistatus"`
	Responses []msResponse `xml:"DAV: response"`
	SyncToken string       `xml:"DAV: sync-token"`
}

type msResponse struct {
	Href      string       `xml:"DAV: href"`
	Status    string       `xml:"DAV: status"`
	Propstats []msPropstat `xml:"DAV: propstat"`
	Error     *anyXML      `xml:"DAV: error"`
}

type msPropstat struct {
	Prop   anyXML `xml:"DAV: prop"`
	Status string `xml:"DAV: status"`
}

// anyXML keeps an element's children as a tree.
type anyXML struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []anyXML   `xml:",any"`
	Text     string     `xml:",chardata"`
}

func (a anyXML) child(space, local string) *anyXML {
	for i := range a.Children {
		if a.Children[i].XMLName.Space == space && a.Children[i].XMLName.Local == local {
			return &a.Children[i]
		}
	}
	return nil
}

func decodeMS(t *testing.T, resp *http.Response) msResp {
	t.Helper()
	wantStatus(t, resp, http.StatusMultiStatus)
	var ms msResp
	if err := xml.NewDecoder(resp.Body).Decode(&ms); err != nil {
		t.Fatalf("decoding multistatus: %v", err)
	}
	return ms
}

// prop finds a property of href with status 200.
func (ms msResp) prop(href, space, local string) *anyXML {
	for _, r := range ms.Responses {
		if r.Href != href {
			continue
		}
		for _, ps := range r.Propstats {
			if strings.Contains(ps.Status, " 200 ") {
				if p := ps.Prop.child(space, local); p != nil {
					return p
				}
			}
		}
	}
	return nil
}

// propStatus reports the status code line under which a property of href appears.
func (ms msResp) propStatus(href, space, local string) string {
	for _, r := range ms.Responses {
		if r.Href != href {
			continue
		}
		for _, ps := range r.Propstats {
			if ps.Prop.child(space, local) != nil {
				return ps.Status
			}
		}
	}
	return ""
}

func (ms msResp) hrefs() []string {
	var out []string
	for _, r := range ms.Responses {
		out = append(out, r.Href)
	}
	return out
}

// davErr decodes a DAV:error body and returns the names of its children.
func davErr(t *testing.T, resp *http.Response) []xml.Name {
	t.Helper()
	var e anyXML
	if err := xml.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("decoding DAV:error: %v", err)
	}
	if e.XMLName != (xml.Name{Space: "DAV:", Local: "error"}) {
		t.Fatalf("error body is %v, want DAV:error", e.XMLName)
	}
	var out []xml.Name
	for _, c := range e.Children {
		out = append(out, c.XMLName)
	}
	return out
}

func wantPrecondition(t *testing.T, resp *http.Response, code int, space, local string) {
	t.Helper()
	wantStatus(t, resp, code)
	for _, n := range davErr(t, resp) {
		if n.Space == space && n.Local == local {
			return
		}
	}
	t.Fatalf("%s %s: DAV:error has no {%s}%s", resp.Request.Method, resp.Request.URL.Path, space, local)
}

func event(uid, summary, start, end string) string {
	return "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:" + uid +
		"\r\nDTSTAMP:20240101T000000Z\r\nDTSTART:" + start + "\r\nDTEND:" + end + "\r\nSUMMARY:" + summary +
		"\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
}

const ct = "Content-Type"
const icsType = "text/calendar; charset=utf-8"
const xmlType = "application/xml; charset=utf-8"

func decodeXML(resp *http.Response, v any) error {
	return xml.NewDecoder(resp.Body).Decode(v)
}

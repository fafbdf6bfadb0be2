package gateway

import (
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/feed"
)

func TestRelTime(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now, "just now"},
		{now.Add(-500 * time.Millisecond), "just now"},
		{now.Add(-time.Second), "1 second ago"},
		{now.Add(-45 * time.Second), "45 seconds ago"},
		{now.Add(-time.Minute), "1 minute ago"},
		{now.Add(-3*time.Minute - 59*time.Second), "3 minutes ago"},
		{now.Add(-time.Hour), "1 hour ago"},
		{now.Add(-23 * time.Hour), "23 hours ago"},
		{now.Add(-24 * time.Hour), "1 day ago"},
		{now.Add(-400 * 24 * time.Hour), "400 days ago"},
		{now.Add(10 * time.Second), "in 10 seconds"},
		{now.Add(5 * time.Minute), "in 5 minutes"},
		{now.Add(time.Hour + 30*time.Minute), "in 1 hour"},
		{now.Add(72 * time.Hour), "in 3 days"},
	} {
		if got := relTime(tc.t, now); got != tc.want {
			t.Errorf("relTime(now%+v) = %q, want %q", tc.t.Sub(now), got, tc.want)
		}
	}
}

// hnode is an element (or, with name "", a text) of a parsed HTML page.
type hnode struct {
	name     string
	attrs    map[string]string
	children []*hnode
	text     string
}

// parseHTML builds a tree of body with encoding/xml in its lenient HTML
// mode (void elements closed, HTML entities known). It fails the test if
// the page is not well nested.
func parseHTML(t *testing.T, body string) *hnode {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(body))
	d.Strict = false
	d.AutoClose = xml.HTMLAutoClose
	d.Entity = xml.HTMLEntity
	root := &hnode{name: "#document"}
	stack := []*hnode{root}
	for range 1 << 20 {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("parsing the page: %v\n%s", err, body)
		}
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &hnode{name: strings.ToLower(tok.Name.Local), attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[strings.ToLower(a.Name.Local)] = a.Value
			}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			if len(stack) == 1 || stack[len(stack)-1].name != strings.ToLower(tok.Name.Local) {
				t.Fatalf("page: unexpected </%s>", tok.Name.Local)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top.children = append(top.children, &hnode{text: string(tok)})
		}
	}
	if len(stack) != 1 {
		t.Fatalf("page: <%s> not closed", stack[len(stack)-1].name)
	}
	return root
}

// all returns every element below n (depth first) for which keep is true.
func (n *hnode) all(keep func(*hnode) bool) []*hnode {
	var out []*hnode
	for _, c := range n.children {
		if c.name == "" {
			continue
		}
		if keep(c) {
			out = append(out, c)
		}
		out = append(out, c.all(keep)...)
	}
	return out
}

func (n *hnode) byClass(class string) []*hnode {
	return n.all(func(c *hnode) bool { return slices.Contains(strings.Fields(c.attrs["class"]), class) })
}

// one returns the only element with class, failing the test otherwise.
func (n *hnode) one(t *testing.T, class string) *hnode {
	t.Helper()
	got := n.byClass(class)
	if len(got) != 1 {
		t.Fatalf("%d elements of class %q, want 1", len(got), class)
	}
	return got[0]
}

// textContent is the text of n and its descendants.
func (n *hnode) textContent() string {
	var b strings.Builder
	var walk func(*hnode)
	walk = func(n *hnode) {
		b.WriteString(n.text)
		for _, c := range n.children {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// statusEnv is a gateway with a mirrored calendar holding a conflict,
// a failing .ics source, a merged calendar and feeds.
type statusEnv struct {
	*env
	now     time.Time
	changes chan string // OnChange calls, "user/cal"
}

const (
	xssSummary = `<script>alert(1)</script>`
	xssAttr    = `"><img src=x onerror=alert(1)>`
	xssName    = `<script>alert("name")</script>`
	xssColor   = `red;background:url(x)`
	xssError   = `dial tcp 127.0.0.1:9: connect: connection refused <b>bold</b> & <a href="x">link</a>`
)

func newStatusEnv(t *testing.T) *statusEnv {
	t.Helper()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	se := &statusEnv{now: now, changes: make(chan string, 100)}
	se.env = newEnv(t, func(o *Options) {
		o.Now = func() time.Time { return now }
		o.OnChange = func(user, cal string) { se.changes <- user + "/" + cal }
		o.Feeds = []Feed{
			{Spec: feed.Spec{Name: "alice-busy", Members: []feed.Member{{User: "alice", Cal: "personal"}, {User: "alice", Cal: "work"}}},
				Tokens: []string{"tok-one", "tok-two"}},
			{Spec: feed.Spec{Name: "bob-only", Members: []feed.Member{{User: "bob", Cal: "personal"}}}, Tokens: []string{"bobtoken"}},
		}
	})
	st := se.store
	if _, err := st.UpdateCalendarProps("alice", "personal", func(c *cache.Calendar) error {
		c.DisplayName, c.Color, c.Description = xssName, "#3366cc", "desc <i>x</i>"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []cache.Calendar{
		{User: "alice", ID: "work", DisplayName: "Work", Color: xssColor, Kind: "caldav", Source: "alice/work", Components: []string{"VEVENT"}},
		{User: "alice", ID: "holidays", DisplayName: "Holidays", Color: "#e0a000ff", Kind: "ics", Source: "alice/holidays", Components: []string{"VEVENT"}},
		{User: "alice", ID: "all", DisplayName: "Everything", Kind: "merged", Members: []string{"personal", "work"}},
		{User: "bob", ID: "work", DisplayName: "Bob work", Kind: "caldav", Source: "bob/work", Components: []string{"VEVENT"}},
	} {
		if _, err := st.CreateCalendar(c); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []cache.SourceState{
		{ID: "alice/work", LastAttempt: now.Add(-3 * time.Minute), LastSuccess: now.Add(-3 * time.Minute), NextDue: now.Add(5 * time.Minute)},
		{ID: "alice/holidays", LastAttempt: now.Add(-10 * time.Minute), LastSuccess: now.Add(-2 * time.Hour), LastError: xssError,
			Failures: 4, NextDue: now.Add(20 * time.Minute)},
	} {
		if err := st.PutSource(s); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.PutObject("alice", "personal", cache.Object{Name: "p.ics", UID: "p", Component: "VEVENT",
		Data: []byte(event("p", xssSummary, "20260301T100000Z", "20260301T110000Z"))}, cache.PutConditions{}); err != nil {
		t.Fatal(err)
	}
	return se
}

// conflict puts object name into user/work as the upstream has it (data
// cur, or none if cur is "") and records a conflict with the loser.
func (se *statusEnv) conflict(user, name, kept, cur, loser string) cache.Conflict {
	t := se.t
	t.Helper()
	if cur != "" {
		if _, err := se.store.PutObjectUpstream(user, "work", cache.Object{Name: name, UID: strings.TrimSuffix(name, ".ics"),
			Component: "VEVENT", Data: []byte(cur), UpstreamHref: "/up/" + name, UpstreamETag: "up-1"}); err != nil {
			t.Fatal(err)
		}
	}
	c := cache.Conflict{User: user, Cal: "work", Name: name, Kept: kept, Reason: "412 on push: modified on both sides",
		Created: se.now.Add(-7 * time.Minute)}
	if loser != "" {
		c.LoserData = []byte(loser)
	}
	c, err := se.store.PutConflict(c)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// page loads the status page as user and parses it.
func (se *statusEnv) page(user string) (*http.Response, *hnode, string) {
	se.t.Helper()
	resp := se.do(user, http.MethodGet, "/", "")
	wantStatus(se.t, resp, http.StatusOK)
	body := readAll(se.t, resp)
	return resp, parseHTML(se.t, body), body
}

// post sends the form as user with extra headers, without following
// redirects.
func (se *statusEnv) post(user string, form url.Values, hdr ...string) (*http.Response, string) {
	se.t.Helper()
	req, err := http.NewRequest(http.MethodPost, se.srv.URL+resolvePath, strings.NewReader(form.Encode()))
	if err != nil {
		se.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(user, testPassword)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := *se.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		se.t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readAll(se.t, resp)
}

// form returns the fields of the form of conflict seq whose button has
// class button (keep-mine or keep-upstream), as the page has it.
func conflictForm(t *testing.T, page *hnode, seq uint64, button string) url.Values {
	t.Helper()
	for _, art := range page.byClass("conflict") {
		if art.attrs["data-seq"] != itoa(seq) {
			continue
		}
		for _, f := range art.all(func(n *hnode) bool { return n.name == "form" }) {
			if len(f.byClass(button)) == 0 {
				continue
			}
			if f.attrs["method"] != "post" || f.attrs["action"] != resolvePath {
				t.Fatalf("form method %q action %q", f.attrs["method"], f.attrs["action"])
			}
			v := url.Values{}
			for _, in := range f.all(func(n *hnode) bool { return n.name == "input" }) {
				v.Set(in.attrs["name"], in.attrs["value"])
			}
			return v
		}
	}
	t.Fatalf("no %s form for conflict %d on the page", button, seq)
	return nil
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func TestStatusPage(t *testing.T) {
	se := newStatusEnv(t)
	up := event("w", xssAttr, "20260302T090000Z", "20260302T100000Z")
	mine := event("w", xssSummary+" my <b>edit</b>", "20260302T093000Z", "20260302T103000Z")
	c := se.conflict("alice", "w.ics", cache.KeptUpstream, up, mine)
	se.conflict("bob", "b.ics", cache.KeptUpstream, event("b", "bob secret", "20260302T090000Z", "20260302T100000Z"), "")

	resp, page, body := se.page("alice")
	csp := resp.Header.Get("Content-Security-Policy")
	m := regexp.MustCompile(`^default-src 'none'; style-src 'nonce-([A-Za-z0-9]+)'; script-src 'nonce-([A-Za-z0-9]+)'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'$`).FindStringSubmatch(csp)
	if m == nil || m[1] != m[2] {
		t.Fatalf("Content-Security-Policy = %q", csp)
	}
	nonce := m[1]
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Referrer-Policy":        "no-referrer",
		"Cache-Control":          "no-store",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// A second load has another nonce.
	if resp2, _, _ := se.page("alice"); resp2.Header.Get("Content-Security-Policy") == csp {
		t.Error("the nonce did not change between two responses")
	}

	// No markup from the store: one script and one style, both with the
	// nonce; no images, no event handlers, no style attributes, no URLs
	// in the stylesheet.
	scripts := page.all(func(n *hnode) bool { return n.name == "script" })
	styles := page.all(func(n *hnode) bool { return n.name == "style" })
	if len(scripts) != 1 || scripts[0].attrs["nonce"] != nonce || len(styles) != 1 || styles[0].attrs["nonce"] != nonce {
		t.Fatalf("%d scripts and %d styles, want one each with the nonce", len(scripts), len(styles))
	}
	if imgs := page.all(func(n *hnode) bool {
		return n.name == "img" || n.name == "b" || n.name == "i" || n.name == "a" && n.attrs["href"] == "x"
	}); len(imgs) != 0 {
		t.Errorf("the page has %d elements from calendar data", len(imgs))
	}
	for _, n := range page.all(func(*hnode) bool { return true }) {
		for k := range n.attrs {
			if strings.HasPrefix(k, "on") || k == "style" || k == "src" {
				t.Errorf("<%s> has attribute %s=%q", n.name, k, n.attrs[k])
			}
		}
	}
	css := styles[0].textContent()
	if strings.Contains(body, "url(x)") || strings.Contains(css, "red") {
		t.Errorf("the invalid color reached the page")
	}
	for _, want := range []string{"#3366cc", "#e0a000ff"} {
		if !strings.Contains(css, "{background-color:"+want+"}") {
			t.Errorf("stylesheet lacks the swatch %s:\n%s", want, css)
		}
	}

	// Calendars.
	cals := map[string]*hnode{}
	for _, n := range page.byClass("calendar") {
		cals[n.attrs["data-id"]] = n
	}
	if len(cals) != 4 {
		t.Fatalf("%d calendars listed, want 4 (alice's only)", len(cals))
	}
	personal := cals["personal"]
	if got := personal.one(t, "name").textContent(); got != xssName {
		t.Errorf("personal's name shown as %q, want %q", got, xssName)
	}
	// A valid color gets a class with a rule in the stylesheet; an
	// invalid one gets none.
	if cls := strings.Fields(personal.one(t, "swatch").attrs["class"]); len(cls) != 2 || !strings.Contains(css, "."+cls[1]+"{background-color:#3366cc}") {
		t.Errorf("personal's swatch classes %q", cls)
	}
	if cls := strings.Fields(cals["work"].one(t, "swatch").attrs["class"]); len(cls) != 1 {
		t.Errorf("work's swatch classes %q, want only swatch", cls)
	}
	for id, want := range map[string]string{"personal": "local", "work": "caldav", "holidays": "ics", "all": "merged"} {
		if got := cals[id].textContent(); !strings.Contains(got, want) {
			t.Errorf("calendar %s: kind %q not shown in %q", id, want, got)
		}
	}
	if got := cals["all"].textContent(); !strings.Contains(got, "Work (work)") || !strings.Contains(got, xssName+" (personal)") {
		t.Errorf("merged members not shown: %q", got)
	}
	nums := func(id string) string { return strings.TrimSpace(cals[id].byClass("num")[0].textContent()) }
	if nums("personal") != "1" || nums("work") != "1" || nums("holidays") != "0" {
		t.Errorf("item counts personal %q work %q holidays %q", nums("personal"), nums("work"), nums("holidays"))
	}
	if in := personal.all(func(n *hnode) bool { return n.name == "input" }); len(in) != 1 || in[0].attrs["value"] != se.srv.URL+"/dav/calendars/alice/personal/" || in[0].attrs["readonly"] == "x" {
		t.Errorf("CalDAV URL input: %+v", in)
	}

	// Sources.
	srcs := map[string]*hnode{}
	for _, n := range page.byClass("source") {
		srcs[n.attrs["data-calendar"]] = n
	}
	if len(srcs) != 2 {
		t.Fatalf("%d sources listed, want 2", len(srcs))
	}
	work, hol := srcs["work"].textContent(), srcs["holidays"].textContent()
	for _, want := range []string{"ok", "3 minutes ago", "3 minutes old", "in 5 minutes"} {
		if !strings.Contains(work, want) {
			t.Errorf("work source row lacks %q: %q", want, work)
		}
	}
	if srcs["holidays"].attrs["data-state"] != "failing" || srcs["work"].attrs["data-state"] != "ok" {
		t.Errorf("states: work %q, holidays %q", srcs["work"].attrs["data-state"], srcs["holidays"].attrs["data-state"])
	}
	for _, want := range []string{"failing", "2 hours ago", "2 hours old", "stale", "in 20 minutes", "4"} {
		if !strings.Contains(hol, want) {
			t.Errorf("holidays source row lacks %q: %q", want, hol)
		}
	}
	if strings.Contains(work, "stale") {
		t.Error("a healthy source is flagged stale")
	}
	errs := page.byClass("err")
	if len(errs) != 1 || errs[0].textContent() != xssError {
		t.Errorf("error text shown: %v", errs)
	}

	// Conflicts: alice's one, with both versions.
	arts := page.byClass("conflict")
	if len(arts) != 1 || arts[0].attrs["data-seq"] != itoa(c.Seq) {
		t.Fatalf("%d conflicts shown, want alice's one", len(arts))
	}
	art := arts[0]
	text := art.textContent()
	for _, want := range []string{"Work", "w.ics", "412 on push: modified on both sides", "7 minutes ago", "kept: upstream"} {
		if !strings.Contains(text, want) {
			t.Errorf("conflict lacks %q: %q", want, text)
		}
	}
	mineSide, upSide := art.one(t, "side-mine"), art.one(t, "side-upstream")
	if got := mineSide.one(t, "summary").textContent(); got != xssSummary+" my <b>edit</b>" {
		t.Errorf("mine summary %q", got)
	}
	if got := upSide.one(t, "summary").textContent(); got != xssAttr {
		t.Errorf("upstream summary %q", got)
	}
	if !strings.Contains(mineSide.textContent(), "20260302T093000Z") || !strings.Contains(mineSide.textContent(), "not kept") ||
		!strings.Contains(upSide.textContent(), "kept") {
		t.Errorf("sides: mine %q, upstream %q", mineSide.textContent(), upSide.textContent())
	}
	if pre := upSide.all(func(n *hnode) bool { return n.name == "pre" }); len(pre) != 1 || pre[0].textContent() != strings.ReplaceAll(up, "\r\n", "\n") {
		t.Errorf("upstream full text not shown as is")
	}
	if len(art.byClass("keep-mine")) != 1 || len(art.byClass("keep-upstream")) != 1 {
		t.Error("conflict lacks its two buttons")
	}
	if strings.Contains(body, "bob secret") || strings.Contains(body, "b.ics") {
		t.Error("bob's conflict is on alice's page")
	}

	// Feed links: alice's feed with both tokens; not bob's.
	var feeds []string
	for _, n := range page.byClass("feed") {
		for _, in := range n.all(func(n *hnode) bool { return n.name == "input" }) {
			feeds = append(feeds, in.attrs["value"])
		}
		if len(n.byClass("copy")) != 2 {
			t.Errorf("feed row without its copy buttons")
		}
	}
	host := strings.TrimPrefix(se.srv.URL, "http://")
	want := []string{
		"http://" + host + "/feeds/tok-one/alice-busy.ics", "webcal://" + host + "/feeds/tok-one/alice-busy.ics",
		"http://" + host + "/feeds/tok-two/alice-busy.ics", "webcal://" + host + "/feeds/tok-two/alice-busy.ics",
	}
	if !slices.Equal(feeds, want) {
		t.Errorf("feed links\n%q\nwant\n%q", feeds, want)
	}
	if strings.Contains(body, "bobtoken") {
		t.Error("bob's feed token is on alice's page")
	}

	// The visible text holds the XSS attempts as text.
	all := page.textContent()
	for _, s := range []string{xssSummary, xssAttr, xssName, xssError} {
		if !strings.Contains(all, s) {
			t.Errorf("the page's text lacks %q", s)
		}
	}

	// HEAD: headers, no body.
	head := se.do("alice", http.MethodHead, "/", "")
	wantStatus(t, head, http.StatusOK)
	if b := readAll(t, head); b != "" || head.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("HEAD / body %q, CSP %q", b, head.Header.Get("Content-Security-Policy"))
	}
}

func TestStatusBaseURL(t *testing.T) {
	e := newEnv(t, func(o *Options) {
		o.BaseURL = "https://cal.example.org/"
		o.Feeds = []Feed{{Spec: feed.Spec{Name: "f", Members: []feed.Member{{User: "alice", Cal: "personal"}}}, Tokens: []string{"t/1"}}}
	})
	resp := e.do("alice", http.MethodGet, "/", "")
	wantStatus(t, resp, http.StatusOK)
	page := parseHTML(t, readAll(t, resp))
	var got []string
	for _, n := range page.all(func(n *hnode) bool { return n.name == "input" }) {
		got = append(got, n.attrs["value"])
	}
	want := []string{"https://cal.example.org/dav/calendars/alice/personal/",
		"https://cal.example.org/feeds/t%2F1/f.ics", "webcal://cal.example.org/feeds/t%2F1/f.ics"}
	if !slices.Equal(got, want) {
		t.Errorf("links %q, want %q", got, want)
	}
	if len(page.byClass("conflict")) != 0 || len(page.byClass("source")) != 0 {
		t.Error("an empty store shows conflicts or sources")
	}
}

// storeState is what a resolution may change.
type storeState struct {
	data      string // the object; "" if deleted
	conflicts int
	outbox    []string
}

func (se *statusEnv) state(user, name string) storeState {
	se.t.Helper()
	var s storeState
	if o, err := se.store.GetObject(user, "work", name); err == nil {
		s.data = string(o.Data)
	} else if !errors.Is(err, cache.ErrNotFound) {
		se.t.Fatal(err)
	}
	cs, err := se.store.ListConflicts(user)
	if err != nil {
		se.t.Fatal(err)
	}
	s.conflicts = len(cs)
	es, err := se.store.PendingOutbox(user, "work")
	if err != nil {
		se.t.Fatal(err)
	}
	for _, e := range es {
		s.outbox = append(s.outbox, e.Op+" "+e.Name+" base="+e.BaseETag)
	}
	return s
}

func TestStatusResolve(t *testing.T) {
	upV := event("w", "upstream version", "20260302T090000Z", "20260302T100000Z")
	myV := event("w", "my version", "20260302T093000Z", "20260302T103000Z")
	for _, tc := range []struct {
		name           string
		kept, cur      string
		loser          string
		button         string
		wantData       string
		wantOutbox     []string
		wantKick       bool
		wantNoSideData bool
	}{
		{name: "upstream kept, keep mine", kept: cache.KeptUpstream, cur: upV, loser: myV, button: "keep-mine",
			wantData: myV, wantOutbox: []string{"put w.ics base=up-1"}, wantKick: true},
		{name: "upstream kept, keep upstream", kept: cache.KeptUpstream, cur: upV, loser: myV, button: "keep-upstream",
			wantData: upV},
		{name: "my deletion lost, keep mine", kept: cache.KeptUpstream, cur: upV, button: "keep-mine",
			wantOutbox: []string{"delete w.ics base=up-1"}, wantKick: true},
		{name: "my deletion lost, keep upstream", kept: cache.KeptUpstream, cur: upV, button: "keep-upstream",
			wantData: upV},
		{name: "mine kept, keep upstream", kept: cache.KeptLocal, cur: myV, loser: upV, button: "keep-upstream",
			wantData: upV, wantOutbox: []string{"put w.ics base=up-1"}, wantKick: true},
		{name: "mine kept, keep mine", kept: cache.KeptLocal, cur: myV, loser: upV, button: "keep-mine",
			wantData: myV},
		{name: "upstream deletion lost, keep upstream", kept: cache.KeptLocal, cur: myV, button: "keep-upstream",
			wantOutbox: []string{"delete w.ics base=up-1"}, wantKick: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := newStatusEnv(t)
			c := se.conflict("alice", "w.ics", tc.kept, tc.cur, tc.loser)
			_, page, _ := se.page("alice")
			form := conflictForm(t, page, c.Seq, tc.button)
			resp, body := se.post("alice", form, "Origin", se.srv.URL, "Sec-Fetch-Site", "same-origin")
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
				t.Fatalf("POST: %s, Location %q\n%s", resp.Status, resp.Header.Get("Location"), body)
			}
			got := se.state("alice", "w.ics")
			if got.data != tc.wantData || got.conflicts != 0 || !slices.Equal(got.outbox, tc.wantOutbox) {
				t.Errorf("after %s: object %q, %d conflicts, outbox %q; want %q, 0, %q",
					tc.button, got.data, got.conflicts, got.outbox, tc.wantData, tc.wantOutbox)
			}
			select {
			case k := <-se.changes:
				if !tc.wantKick || k != "alice/work" {
					t.Errorf("OnChange(%s), want kick %v", k, tc.wantKick)
				}
			default:
				if tc.wantKick {
					t.Error("the engine was not kicked after the write")
				}
			}
			// The page no longer shows it.
			if _, page, _ := se.page("alice"); len(page.byClass("conflict")) != 0 {
				t.Error("the resolved conflict is still shown")
			}
			// The same form again: the conflict is gone.
			resp, body = se.post("alice", form)
			if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, `href="/"`) || !strings.Contains(body, "resolved already") {
				t.Errorf("second POST: %s\n%s", resp.Status, body)
			}
		})
	}
}

func TestStatusResolveRaced(t *testing.T) {
	se := newStatusEnv(t)
	upV := event("w", "upstream version", "20260302T090000Z", "20260302T100000Z")
	c := se.conflict("alice", "w.ics", cache.KeptUpstream, upV, event("w", "my version", "20260302T093000Z", "20260302T103000Z"))
	_, page, _ := se.page("alice")
	form := conflictForm(t, page, c.Seq, "keep-mine")
	// A client writes after the page was loaded.
	raced := event("w", "written meanwhile", "20260302T110000Z", "20260302T120000Z")
	wantStatus(t, se.do("alice", http.MethodPut, "/dav/calendars/alice/work/w.ics", raced, ct, icsType), http.StatusNoContent)
	before := se.state("alice", "w.ics")
	resp, body := se.post("alice", form)
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("POST after a write: %s, want 409\n%s", resp.Status, body)
	}
	msg := parseHTML(t, body).all(func(n *hnode) bool { return n.attrs["id"] == "message" })
	if len(msg) != 1 || !strings.Contains(msg[0].textContent(), "changed after this page was loaded") {
		t.Errorf("no clear message on the page: %v", msg)
	}
	if after := se.state("alice", "w.ics"); after.data != raced || after.conflicts != 1 || !slices.Equal(after.outbox, before.outbox) {
		t.Errorf("a refused resolution changed the store: %+v, before %+v", after, before)
	}
	// The page shown with the message has the new ETag: choosing again works.
	form = conflictForm(t, parseHTML(t, body), c.Seq, "keep-mine")
	if resp, body := se.post("alice", form); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("second choice: %s\n%s", resp.Status, body)
	}
	if got := se.state("alice", "w.ics"); !strings.Contains(got.data, "my version") || got.conflicts != 0 {
		t.Errorf("after the second choice: %+v", got)
	}
}

func TestStatusCSRF(t *testing.T) {
	se := newStatusEnv(t)
	upV := event("w", "upstream version", "20260302T090000Z", "20260302T100000Z")
	c := se.conflict("alice", "w.ics", cache.KeptUpstream, upV, event("w", "my version", "20260302T093000Z", "20260302T103000Z"))
	_, page, _ := se.page("alice")
	good := conflictForm(t, page, c.Seq, "keep-mine")
	_, bobPage, _ := se.page("bob")
	bobToken := bobPage.byClass("conflict")
	if len(bobToken) != 0 {
		t.Fatal("bob sees a conflict")
	}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = slices.Clone(vv)
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	// bob's own token, as a form of bob's page would carry it.
	bobCSRF := se.h.csrfToken("bob")
	before := se.state("alice", "w.ics")
	for _, tc := range []struct {
		name string
		user string
		form url.Values
		hdr  []string
		want int
	}{
		{"no token", "alice", with("csrf", ""), nil, http.StatusForbidden},
		{"wrong token", "alice", with("csrf", "AAAA"+good.Get("csrf")[4:]), nil, http.StatusForbidden},
		{"token of another user", "alice", with("csrf", bobCSRF), nil, http.StatusForbidden},
		{"cross-site Origin", "alice", good, []string{"Origin", "https://evil.example"}, http.StatusForbidden},
		{"null Origin from another site", "alice", good, []string{"Origin", "null", "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"Origin with another port", "alice", good, []string{"Origin", "http://127.0.0.1:1"}, http.StatusForbidden},
		{"Sec-Fetch-Site cross-site", "alice", good, []string{"Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"Sec-Fetch-Site same-site", "alice", good, []string{"Sec-Fetch-Site", "same-site"}, http.StatusForbidden},
		{"unauthenticated", "", good, nil, http.StatusUnauthorized},
		{"another user's conflict", "bob", with("csrf", bobCSRF), nil, http.StatusNotFound},
		{"bad keep", "alice", with("keep", "both"), nil, http.StatusBadRequest},
		{"bad seq", "alice", with("seq", "x"), nil, http.StatusBadRequest},
		{"no etag", "alice", with("etag", ""), nil, http.StatusBadRequest},
		{"unknown seq", "alice", with("seq", "999999"), nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := se.post(tc.user, tc.form, tc.hdr...)
			if resp.StatusCode != tc.want {
				t.Fatalf("POST: %s, want %d\n%s", resp.Status, tc.want, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || !strings.Contains(body, `href="/"`) {
				t.Errorf("refusal is not a short HTML page with a link back: %q\n%s", ct, body)
			}
			if tc.want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("401 without a Basic challenge")
			}
			if after := se.state("alice", "w.ics"); after.data != before.data || after.conflicts != before.conflicts || !slices.Equal(after.outbox, before.outbox) {
				t.Errorf("a refused request changed the store: %+v, before %+v", after, before)
			}
		})
	}
	// The same form as a browser sends it from the page (whose
	// Referrer-Policy makes the Origin "null") goes through.
	if resp, body := se.post("alice", good, "Origin", "null", "Sec-Fetch-Site", "same-origin"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("the good form: %s\n%s", resp.Status, body)
	}
}

func TestStatusRouting(t *testing.T) {
	se := newStatusEnv(t)
	resp := se.do("", http.MethodGet, "/", "")
	wantStatus(t, resp, http.StatusUnauthorized)
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="calgate"`) || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("401: WWW-Authenticate %q, CSP %q", resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Content-Security-Policy"))
	}
	if b := readAll(t, resp); strings.Contains(b, "Work") || !strings.Contains(b, "Sign in") {
		t.Errorf("401 page: %s", b)
	}
	resp = se.do("alice", http.MethodDelete, "/", "")
	wantStatus(t, resp, http.StatusMethodNotAllowed)
	if a := resp.Header.Get("Allow"); a != rootAllow {
		t.Errorf("405 Allow %q", a)
	}
	resp = se.do("alice", http.MethodPost, "/", "x=1")
	wantStatus(t, resp, http.StatusMethodNotAllowed)
	resp = se.do("alice", http.MethodOptions, "/", "")
	wantStatus(t, resp, http.StatusOK)
	if a := resp.Header.Get("Allow"); a != rootAllow || !strings.Contains(resp.Header.Get("DAV"), "calendar-access") {
		t.Errorf("OPTIONS /: Allow %q, DAV %q", a, resp.Header.Get("DAV"))
	}
	// The bare URL still answers DAV clients.
	decodeMS(t, se.do("alice", "PROPFIND", "/", `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:current-user-principal/></d:prop></d:propfind>`, "Depth", "0"))
	resp = se.do("alice", http.MethodGet, "/status/nope", "")
	wantStatus(t, resp, http.StatusNotFound)
	if b := readAll(t, resp); !strings.Contains(b, `href="/"`) {
		t.Errorf("404 page without a link back: %s", b)
	}
	resp = se.do("alice", http.MethodGet, resolvePath, "")
	wantStatus(t, resp, http.StatusMethodNotAllowed)
	if a := resp.Header.Get("Allow"); a != http.MethodPost {
		t.Errorf("GET %s: Allow %q", resolvePath, a)
	}
	// Paths that are neither the page nor DAV stay as they were.
	wantStatus(t, se.do("alice", http.MethodGet, "/index.html", ""), http.StatusNotFound)
	wantStatus(t, se.do("alice", http.MethodGet, "/.well-known/caldav", ""), http.StatusOK) // followed to /dav/
}

// TestStatusConcurrent loads the page while conflicts are resolved.
func TestStatusConcurrent(t *testing.T) {
	se := newStatusEnv(t)
	var seqs []uint64
	for i := range 10 {
		name := "c" + itoa(uint64(i)) + ".ics"
		c := se.conflict("alice", name, cache.KeptUpstream, event("c"+itoa(uint64(i)), "up", "20260302T090000Z", "20260302T100000Z"), "")
		seqs = append(seqs, c.Seq)
	}
	_, page, _ := se.page("alice")
	var wg sync.WaitGroup
	for _, seq := range seqs {
		form := conflictForm(t, page, seq, "keep-upstream")
		wg.Go(func() {
			if resp, body := se.post("alice", form); resp.StatusCode != http.StatusSeeOther {
				t.Errorf("POST: %s\n%s", resp.Status, body)
			}
		})
		wg.Go(func() {
			if resp := se.do("alice", http.MethodGet, "/", ""); resp.StatusCode != http.StatusOK {
				t.Errorf("GET /: %s", resp.Status)
			}
		})
	}
	wg.Wait()
	if _, page, _ := se.page("alice"); len(page.byClass("conflict")) != 0 {
		t.Errorf("%d conflicts left", len(page.byClass("conflict")))
	}
}

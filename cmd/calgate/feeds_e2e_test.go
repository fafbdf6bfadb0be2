package main

// End-to-end tests of merged .ics feeds (issue 5): a calgate process on
// 127.0.0.1 with three member calendars of alice (two local ones filled
// over CalDAV, one mirroring a fixture feed served by an httptest server)
// publishes a busy feed and a full feed. A real subscriber (vdirsyncer's
// read-only http storage, the Debian package) syncs each feed into a vdir,
// and the items it gets are compared, item by item, with what the members
// hold after de-duplication, prefixes and privacy. The feeds must parse
// with Debian's python3-icalendar and with go-ical, and `calgate export`
// (with calgate stopped) must write the very bytes a subscriber got.

import (
	"bytes"
	"context"
	"fmt"
	"github.com/calgate/calgate/internal/fixtures"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-ical"
)

const (
	// feFullTokensEnv and feBusyTokensEnv name the variables of the feeds'
	// tokens_env; the test sets them and calgate (and calgate export)
	// inherit them.
	feFullTokensEnv = "CALGATE_E2E_FEED_FULL_TOKENS"
	feBusyTokensEnv = "CALGATE_E2E_FEED_BUSY_TOKENS"
	feFullToken     = "full-subscriber-one-0123456789"
	feFullToken2    = "full-subscriber-two-9876543210"
	feBusyToken     = "busy-subscriber-0123456789abcdef"

	feFullName = "alice-full"
	feBusyName = "alice-busy"
	// feBusyText is the busy feed's busy_summary; its comma is escaped on
	// the wire (RFC 5545 §3.3.11) and must come back as text.
	feBusyText = "Busy, sorry"
	// feWorkPrefix is the SUMMARY prefix of work in both feeds; the busy
	// feed ignores it (feed.Member.Prefix).
	feWorkPrefix = "[Work] "

	feHolidaysPath = "/dav/calendars/" + testUser + "/holidays/"
	feHolidaysFile = "feeds/google-public-holidays.ics"
)

// feMembers are the member calendars of both feeds, in feed order (the
// tie-break of de-duplication).
var feMembers = []string{"personal", "work", "holidays"}

// feBusyRemoved are the properties busy privacy removes (DESIGN.md §7 and
// feed.busyRemoved).
var feBusyRemoved = []string{
	"DESCRIPTION", "LOCATION", "ATTENDEE", "ORGANIZER", "ATTACH", "URL", "CONTACT", "COMMENT", "CATEGORIES",
	"X-ALT-DESC", "GEO", "RESOURCES", "CONFERENCE", "IMAGE", "X-APPLE-STRUCTURED-LOCATION",
}

// feFixturesDir is the shared iCalendar corpus.
func feFixturesDir(t *testing.T) string { return fixtures.Dir(t) }

// feReadFixture reads a fixture file, relative to shared/fixtures/ics.
func feReadFixture(t *testing.T, dir, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// feDropLines removes the content lines (with their continuation lines)
// whose property name is one of names, and the components named in comps
// (BEGIN to END), from an iCalendar stream.
func feDropLines(data []byte, names []string, comps []string) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	var out strings.Builder
	dropping, skipComp := false, ""
	for _, l := range lines {
		if l == "" {
			continue
		}
		if (l[0] == ' ' || l[0] == '\t') && dropping {
			continue
		}
		dropping = false
		bare := strings.TrimRight(l, "\r\n")
		if skipComp != "" {
			if strings.EqualFold(bare, "END:"+skipComp) {
				skipComp = ""
			}
			continue
		}
		name := bare
		if i := strings.IndexAny(name, ";:"); i >= 0 {
			name = name[:i]
		}
		if slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, name) }) {
			dropping = true
			continue
		}
		if c, ok := strings.CutPrefix(bare, "BEGIN:"); ok && slices.Contains(comps, strings.ToUpper(c)) {
			skipComp = strings.ToUpper(c)
			continue
		}
		out.WriteString(l)
	}
	return []byte(out.String())
}

// feSource is one object put into a member calendar (or, for holidays,
// the fixture feed the member mirrors).
type feSource struct {
	member string // personal, work or holidays
	name   string // resource name; "" for the mirrored feed
	body   []byte
}

// feComp is what the comparison needs of one component.
type feComp struct {
	rid         string // RECURRENCE-ID value and TZID; "" for a master
	summary     string // feNoSummary when there is none
	cancelled   bool
	transparent bool
	seq         int
}

// feNoSummary stands for a component without SUMMARY.
const feNoSummary = "\x00(no SUMMARY)"

// feObject is one member's object: the components of one UID.
type feObject struct {
	member int // index in feMembers
	uid    string
	comps  []feComp
}

// feRID is the key of a component in an item: its RECURRENCE-ID value
// with its TZID parameter, "" for a master.
func feRID(c *ical.Component) string {
	p := c.Props.Get(ical.PropRecurrenceID)
	if p == nil {
		return ""
	}
	return p.Params.Get(ical.ParamTimezoneID) + "|" + p.Value
}

// feSummary is the SUMMARY text of c, or feNoSummary.
func feSummary(t *testing.T, c *ical.Component) string {
	t.Helper()
	if c.Props.Get(ical.PropSummary) == nil {
		return feNoSummary
	}
	s, err := c.Props.Text(ical.PropSummary)
	if err != nil {
		t.Errorf("SUMMARY of %s: %v", c.Name, err)
	}
	return s
}

// feDecode decodes one iCalendar stream with go-ical and returns its
// VEVENT/VTODO/VJOURNAL components.
func feDecode(t *testing.T, what string, data []byte) []*ical.Component {
	t.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(data)).Decode()
	if err != nil {
		t.Fatalf("go-ical cannot decode %s: %v", what, err)
	}
	var out []*ical.Component
	for _, c := range cal.Children {
		switch c.Name {
		case ical.CompEvent, ical.CompToDo, ical.CompJournal:
			out = append(out, c)
		}
	}
	return out
}

// feObjects groups the components of data by UID, as objects of member.
func feObjects(t *testing.T, member int, what string, data []byte) map[string]*feObject {
	t.Helper()
	objs := make(map[string]*feObject)
	for _, c := range feDecode(t, what, data) {
		uid, err := c.Props.Text(ical.PropUID)
		if err != nil || uid == "" {
			t.Fatalf("%s: component without UID", what)
		}
		fc := feComp{rid: feRID(c), summary: feSummary(t, c)}
		if p := c.Props.Get(ical.PropStatus); p != nil {
			fc.cancelled = strings.EqualFold(p.Value, "CANCELLED")
		}
		if p := c.Props.Get(ical.PropTransparency); p != nil {
			fc.transparent = strings.EqualFold(p.Value, "TRANSPARENT")
		}
		if p := c.Props.Get(ical.PropSequence); p != nil {
			fc.seq, _ = strconv.Atoi(strings.TrimSpace(p.Value))
		}
		o := objs[uid]
		if o == nil {
			o = &feObject{member: member, uid: uid}
			objs[uid] = o
		}
		o.comps = append(o.comps, fc)
	}
	return objs
}

// feItem is a subscriber's view of one item: RECURRENCE-ID key -> SUMMARY.
type feItem map[string]string

// feExpected computes the feed's items from the members' objects: the
// winner of each UID (highest SEQUENCE of any component; the test data
// has no ties, which would fall to LAST-MODIFIED), with the member's
// prefix (full) or the busy text, cancelled and transparent components
// left out, and a cancelled master or an object left with nothing left
// out whole (busy).
func feExpected(t *testing.T, sources []feSource, busy bool, prefix map[string]string) map[string]feItem {
	t.Helper()
	cands := make(map[string][]*feObject)
	for _, s := range sources {
		m := slices.Index(feMembers, s.member)
		for uid, o := range feObjects(t, m, s.member+"/"+s.name, s.body) {
			cands[uid] = append(cands[uid], o)
		}
	}
	want := make(map[string]feItem, len(cands))
	for uid, objs := range cands {
		win, best, tie := -1, 0, false
		for i, o := range objs {
			seq := 0
			for _, c := range o.comps {
				seq = max(seq, c.seq)
			}
			switch {
			case win < 0 || seq > best:
				win, best, tie = i, seq, false
			case seq == best:
				tie = true
			}
		}
		if tie {
			t.Fatalf("test data: UID %s has two versions with SEQUENCE %d", uid, best)
		}
		o := objs[win]
		item := make(feItem)
		cancelledMaster := false
		for _, c := range o.comps {
			if _, dup := item[c.rid]; dup {
				t.Fatalf("test data: UID %s has two components with RECURRENCE-ID %q", uid, c.rid)
			}
			if busy {
				if c.rid == "" && c.cancelled {
					cancelledMaster = true
				}
				if c.cancelled || c.transparent {
					continue
				}
				item[c.rid] = feBusyText
				continue
			}
			s := c.summary
			if s != feNoSummary {
				s = prefix[feMembers[o.member]] + s
			}
			item[c.rid] = s
		}
		if cancelledMaster || len(item) == 0 {
			continue
		}
		want[uid] = item
	}
	return want
}

// feSignature identifies an item by its content, without the properties
// vdirsyncer's http storage rewrites or ignores (UID, which it replaces
// by a hash of the item, and DTSTAMP, LAST-MODIFIED and CREATED): the
// sorted lines of each component, nested components included, sorted.
func feSignature(comps []*ical.Component) string {
	parts := make([]string, 0, len(comps))
	for _, c := range comps {
		parts = append(parts, feCompSignature(c))
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n")
}

func feCompSignature(c *ical.Component) string {
	var lines []string
	for name, props := range c.Props {
		switch name {
		case ical.PropUID, ical.PropDateTimeStamp, ical.PropLastModified, ical.PropCreated:
			continue
		}
		for _, p := range props {
			var b strings.Builder
			b.WriteString(name)
			for _, k := range slices.Sorted(maps.Keys(p.Params)) {
				fmt.Fprintf(&b, ";%s=%q", k, p.Params[k])
			}
			b.WriteString(":" + p.Value)
			lines = append(lines, b.String())
		}
	}
	for _, ch := range c.Children {
		lines = append(lines, feCompSignature(ch))
	}
	slices.Sort(lines)
	return "BEGIN:" + c.Name + "\n" + strings.Join(lines, "\n") + "\nEND:" + c.Name
}

// feFeedItems decodes a feed with go-ical and returns its items by UID
// (checking that no UID has two masters or two components with the same
// RECURRENCE-ID) and the UID of each item signature.
func feFeedItems(t *testing.T, what string, body []byte) (items map[string]feItem, bySig map[string]string) {
	t.Helper()
	grouped := make(map[string][]*ical.Component)
	var order []string
	for _, c := range feDecode(t, what, body) {
		uid, err := c.Props.Text(ical.PropUID)
		if err != nil || uid == "" {
			t.Fatalf("%s: %s without UID", what, c.Name)
		}
		if grouped[uid] == nil {
			order = append(order, uid)
		}
		grouped[uid] = append(grouped[uid], c)
	}
	items = make(map[string]feItem, len(grouped))
	bySig = make(map[string]string, len(grouped))
	for _, uid := range order {
		item := make(feItem)
		for _, c := range grouped[uid] {
			rid := feRID(c)
			if _, dup := item[rid]; dup {
				t.Errorf("%s: duplicate UID %s (RECURRENCE-ID %q twice)", what, uid, rid)
			}
			item[rid] = feSummary(t, c)
		}
		items[uid] = item
		sig := feSignature(grouped[uid])
		if other, dup := bySig[sig]; dup {
			// vdirsyncer's http storage would make one item of both.
			t.Fatalf("test data: %s items %s and %s differ only in UID/DTSTAMP", what, other, uid)
		}
		bySig[sig] = uid
	}
	return items, bySig
}

// feCompareItems reports the differences between the items a subscriber
// got and the expected ones, UID by UID.
func feCompareItems(t *testing.T, what string, got, want map[string]feItem) {
	t.Helper()
	for _, uid := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[uid]
		switch {
		case !ok:
			t.Errorf("%s: item %s missing (want %q)", what, uid, want[uid])
		case !maps.Equal(g, want[uid]):
			t.Errorf("%s: item %s is %q, want %q", what, uid, g, want[uid])
		}
	}
	for _, uid := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[uid]; !ok {
			t.Errorf("%s: unexpected item %s: %q", what, uid, got[uid])
		}
	}
}

// feCheckBusy checks busy privacy on decoded components: every SUMMARY is
// the busy text, no removed property and no nested component is left, and
// nothing cancelled or transparent is there.
func feCheckBusy(t *testing.T, what string, comps []*ical.Component) {
	t.Helper()
	for _, c := range comps {
		uid, _ := c.Props.Text(ical.PropUID)
		where := fmt.Sprintf("%s: %s %s %s", what, c.Name, uid, feRID(c))
		if s := feSummary(t, c); s != feBusyText {
			t.Errorf("%s: SUMMARY %q, want %q", where, s, feBusyText)
		}
		if n := len(c.Props.Values(ical.PropSummary)); n != 1 {
			t.Errorf("%s: %d SUMMARY properties", where, n)
		}
		for _, name := range feBusyRemoved {
			if p := c.Props.Get(name); p != nil {
				t.Errorf("%s: busy feed has %s:%s", where, name, p.Value)
			}
		}
		for _, ch := range c.Children {
			t.Errorf("%s: busy feed has a nested %s", where, ch.Name)
		}
		if p := c.Props.Get(ical.PropStatus); p != nil && strings.EqualFold(p.Value, "CANCELLED") {
			t.Errorf("%s: busy feed has STATUS:CANCELLED", where)
		}
		if p := c.Props.Get(ical.PropTransparency); p != nil && strings.EqualFold(p.Value, "TRANSPARENT") {
			t.Errorf("%s: busy feed has TRANSP:TRANSPARENT", where)
		}
	}
}

// feGet GETs path without credentials and without compression, as a
// plain subscriber, and returns the body of the 200 answer.
func (p *calgateProcess) feGet(t *testing.T, path string, auth bool) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, strings.TrimSuffix(p.URL, "/")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "identity") // no transparent gzip: the bytes as sent
	if auth {
		req.SetBasicAuth(testUser, testPassword)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", path, resp.Status, buf.Bytes())
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/calendar") {
		t.Errorf("GET %s: Content-Type %q", path, ct)
	}
	return buf.Bytes()
}

// feWriteConfig writes the calgate config of the feed tests and sets the
// feeds' token variables.
func feWriteConfig(t *testing.T, dir, holidaysURL string) string {
	t.Helper()
	t.Setenv(feFullTokensEnv, feFullToken+","+feFullToken2)
	t.Setenv(feBusyTokensEnv, feBusyToken)
	q := strconv.Quote
	yml := strings.NewReplacer(
		"DATA", q(filepath.Join(dir, "calgate.db")), "USER", testUser, "HASH", q(testHash), "ICSURL", q(holidaysURL),
		"BUSYNAME", feBusyName, "BUSYTEXT", q(feBusyText), "PREFIX", q(feWorkPrefix), "BUSYENV", feBusyTokensEnv,
		"FULLNAME", feFullName, "FULLENV", feFullTokensEnv,
	).Replace(`listen: "127.0.0.1:0"
data: DATA
users:
  - name: USER
    password_hash: HASH
    calendars:
      - id: personal
        name: Personal
      - id: work
        name: Work
      - id: holidays
        name: Holidays
        ics:
          url: ICSURL
          interval: 10s
feeds:
  - name: BUSYNAME
    calendars: [USER/personal, USER/work, USER/holidays]
    privacy: busy
    busy_summary: BUSYTEXT
    prefix: {USER/work: PREFIX}
    tokens_env: BUSYENV
  - name: FULLNAME
    title: "Alice, everything"
    calendars: [USER/personal, USER/work, USER/holidays]
    privacy: full
    prefix: {USER/work: PREFIX}
    tokens_env: FULLENV
`)
	p := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// feRichLines are properties busy privacy must remove, and an alarm.
var feRichLines = []string{
	"DESCRIPTION:The secret agenda\\, in detail",
	"LOCATION:Room 42\\, HQ",
	"ATTENDEE;CN=Bob;PARTSTAT=ACCEPTED:mailto:bob@example.com",
	"ORGANIZER;CN=Alice:mailto:alice@example.com",
	"ATTACH:https://example.com/agenda.pdf",
	"URL:https://example.com/meeting/42",
	"CONTACT:Carol\\, +1 555 0100",
	"COMMENT:private comment",
	"CATEGORIES:SECRET,PROJECT-X",
	"X-ALT-DESC;FMTTYPE=text/html:<p>The secret agenda</p>",
	"GEO:37.386013;-122.082932",
	"RESOURCES:Projector",
	"CONFERENCE;VALUE=URI;FEATURE=VIDEO:https://meet.example.com/abc-def",
	"IMAGE;VALUE=URI;DISPLAY=BADGE:https://example.com/badge.png",
	"X-APPLE-STRUCTURED-LOCATION;VALUE=URI;X-TITLE=HQ:geo:37.33,-122.03",
	"BEGIN:VALARM",
	"ACTION:DISPLAY",
	"DESCRIPTION:Secret reminder",
	"TRIGGER:-PT10M",
	"END:VALARM",
}

// feSources returns the objects of the test: what goes into personal and
// work over CalDAV, and the mirrored fixture feed of holidays.
func feSources(t *testing.T, fixtures string) []feSource {
	t.Helper()
	t0 := time.Date(2031, 4, 7, 9, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * 26 * time.Hour) } // distinct starts
	var src []feSource
	add := func(member, name string, body []byte) {
		src = append(src, feSource{member: member, name: name, body: body})
	}
	add("personal", "rich.ics", eventICS("rich@feeds.test", "Board meeting (secret)", at(0), feRichLines...))
	add("personal", "transparent.ics", eventICS("transparent@feeds.test", "Lunch maybe", at(1), "TRANSP:TRANSPARENT"))
	add("personal", "cancelled.ics", eventICS("cancelled@feeds.test", "Cancelled dentist", at(2), "STATUS:CANCELLED"))
	for i := range 3 {
		add("personal", fmt.Sprintf("p-%d.ics", i), eventICS(fmt.Sprintf("p-%d@feeds.test", i), fmt.Sprintf("Personal %d", i), at(3+i)))
		add("work", fmt.Sprintf("w-%d.ics", i), eventICS(fmt.Sprintf("w-%d@feeds.test", i), fmt.Sprintf("Work %d", i), at(6+i)))
	}
	// A long UTF-8 SUMMARY: with the prefix the line is folded again, never
	// inside a UTF-8 sequence.
	add("work", "long.ics", eventICS("long@feeds.test",
		"Quartalsübergreifende Größenabschätzung für Überstunden – Ärger vermeiden, Öl sparen ✓", at(9)))
	// Recurring series with overrides, from the shared corpus: a cancelled
	// override (Thunderbird), a moved instance (Google, METHOD removed:
	// a CalDAV PUT refuses it), and overrides with attendees, organizer and
	// alarms (Zimbra; its empty top-level X-UNKNOWN component is removed,
	// see TestFeedsE2E's note on vdirsyncer).
	add("personal", "thunderbird.ics", feReadFixture(t, fixtures, "recurrence/thunderbird-cancelled-override.ics"))
	add("personal", "google-moved.ics", feDropLines(feReadFixture(t, fixtures, "recurrence/google-moved-instance.ics"), []string{"METHOD"}, nil))
	add("work", "zimbra.ics", feDropLines(feReadFixture(t, fixtures, "recurrence/zimbra-recur-instances.ics"), nil, []string{"X-UNKNOWN"}))
	// 10 UIDs in both personal and work with different SEQUENCEs: work's
	// version wins for 0-4, personal's for 5-9.
	for i := range 10 {
		uid := fmt.Sprintf("collide-%02d@feeds.test", i)
		start := at(20 + i)
		for _, m := range []struct {
			member string
			seq    int
		}{{"personal", i}, {"work", 9 - i}} {
			add(m.member, fmt.Sprintf("collide-%02d.ics", i), eventICS(uid,
				fmt.Sprintf("Collision %d, %s version (SEQUENCE %d)", i, m.member, m.seq), start,
				fmt.Sprintf("SEQUENCE:%d", m.seq), fmt.Sprintf("DESCRIPTION:%s copy", m.member)))
		}
	}
	add("holidays", "", feReadFixture(t, fixtures, feHolidaysFile))
	return src
}

// feVdirsyncer syncs feedURL into a fresh vdir with vdirsyncer's read-only
// http storage, twice (the second sync must change nothing), and returns
// the vdir's directory.
func feVdirsyncer(t *testing.T, srv *calgateProcess, feedURL string) string {
	t.Helper()
	dir := t.TempDir()
	vdir := filepath.Join(dir, "vdir")
	if err := os.MkdirAll(vdir, 0o700); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "vdirsyncer.conf")
	conf := fmt.Sprintf(`[general]
status_path = %q

[pair feed]
a = "feed_remote"
b = "feed_local"
collections = null
conflict_resolution = "a wins"

[storage feed_remote]
type = "http"
url = %q

[storage feed_local]
type = "filesystem"
path = %q
fileext = ".ics"
`, filepath.Join(dir, "status")+"/", feedURL, vdir+"/")
	if err := os.WriteFile(config, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	env := scrubbedEnv(t)
	run := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "/usr/bin/vdirsyncer", append([]string{"-c", config}, args...)...)
		cmd.Env = env
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("vdirsyncer %s: %v\n%s\ncalgate:\n%s", strings.Join(args, " "), err, out, srv.logs.String())
		}
		return string(out)
	}
	run("discover")
	out := run("sync")
	t.Logf("vdirsyncer sync: %d changes", len(vdirsyncerChange.FindAllString(out, -1)))
	before := snapshotDir(t, vdir)
	out = run("sync")
	if changes := vdirsyncerChange.FindAllString(out, -1); len(changes) > 0 {
		t.Errorf("a second sync of an unchanged feed changed the vdir:\n%s", strings.Join(changes, "\n"))
	}
	if after := snapshotDir(t, vdir); !maps.Equal(before, after) {
		t.Errorf("a second sync of an unchanged feed changed the vdir files")
	}
	return vdir
}

// feVdirItems reads the vdir's items, maps each back to the feed's UID by
// its content (vdirsyncer's http storage replaces every UID by a hash of
// the item) and returns them by that UID, with all their components.
func feVdirItems(t *testing.T, what, vdir string, bySig map[string]string) (map[string]feItem, []*ical.Component) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(vdir, "*.ics"))
	if err != nil {
		t.Fatal(err)
	}
	items := make(map[string]feItem, len(files))
	var all []*ical.Component
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		comps := feDecode(t, what+" "+filepath.Base(f), data)
		if len(comps) == 0 {
			t.Errorf("%s: %s holds no component", what, filepath.Base(f))
			continue
		}
		all = append(all, comps...)
		uids := make(map[string]bool)
		for _, c := range comps {
			u, _ := c.Props.Text(ical.PropUID)
			uids[u] = true
		}
		if len(uids) != 1 {
			t.Errorf("%s: %s holds several UIDs %v", what, filepath.Base(f), slices.Sorted(maps.Keys(uids)))
		}
		uid, ok := bySig[feSignature(comps)]
		if !ok {
			t.Errorf("%s: %s matches no item of the feed:\n%s", what, filepath.Base(f), data)
			continue
		}
		if _, dup := items[uid]; dup {
			t.Errorf("%s: two files hold the feed's item %s", what, uid)
		}
		item := make(feItem)
		for _, c := range comps {
			rid := feRID(c)
			if _, dup := item[rid]; dup {
				t.Errorf("%s: %s (feed UID %s) has RECURRENCE-ID %q twice", what, filepath.Base(f), uid, rid)
			}
			item[rid] = feSummary(t, c)
		}
		items[uid] = item
	}
	return items, all
}

// feRawLine matches a content line (after unfolding) naming a property
// busy privacy removes, or a nested component.
var feRawLine = regexp.MustCompile(`(?im)^(DESCRIPTION|LOCATION|ATTENDEE|ORGANIZER|ATTACH|URL|CONTACT|COMMENT|CATEGORIES|X-ALT-DESC|GEO|RESOURCES|CONFERENCE|IMAGE|X-APPLE-STRUCTURED-LOCATION)[;:]|^BEGIN:(VALARM|VLOCATION|PARTICIPANT)\b`)

// feUnfold joins folded lines (RFC 5545 §3.1).
func feUnfold(b []byte) string {
	s := strings.ReplaceAll(string(b), "\r\n", "\n")
	s = strings.ReplaceAll(s, "\n ", "")
	return strings.ReplaceAll(s, "\n\t", "")
}

// feCheckWire checks what every feed must be on the wire: CRLF line ends
// only, lines of at most 75 octets, each valid UTF-8.
func feCheckWire(t *testing.T, what string, body []byte) {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("END:VCALENDAR\r\n")) {
		t.Errorf("%s does not end with END:VCALENDAR CRLF", what)
	}
	for i, l := range bytes.SplitAfter(body, []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		if !bytes.HasSuffix(l, []byte("\r\n")) || bytes.Count(l, []byte("\r")) != 1 {
			t.Errorf("%s line %d does not end with CRLF alone: %q", what, i+1, l)
			continue
		}
		if n := len(l) - 2; n > 75 {
			t.Errorf("%s line %d is %d octets: %q", what, i+1, n, l)
		}
		if !utf8.Valid(l) {
			t.Errorf("%s line %d is not valid UTF-8 by itself: %q", what, i+1, l)
		}
	}
}

// TestFeedsE2E is issue 5's "real subscriber" test, with calgate export and
// python3-icalendar, over one calgate process.
//
// A note on the data: zimbra-recur-instances.ics ends in an empty
// top-level X-UNKNOWN component. A full feed copies it, and vdirsyncer's
// http storage refuses any top-level component other than VEVENT, VTODO,
// VJOURNAL and VTIMEZONE ("Unknown component"), so it is removed before
// the PUT.
func TestFeedsE2E(t *testing.T) {
	begin := time.Now()
	fixtures := feFixturesDir(t)
	holidays := feReadFixture(t, fixtures, feHolidaysFile)
	ics := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/holidays.ics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
		w.Write(holidays)
	}))
	defer ics.Close()
	if !strings.HasPrefix(ics.URL, "http://127.0.0.1:") {
		t.Fatalf("httptest server on %s, want 127.0.0.1", ics.URL)
	}

	dir := t.TempDir()
	config := feWriteConfig(t, dir, ics.URL+"/holidays.ics")
	srv := startCalgate(t, config)

	sources := feSources(t, fixtures)
	nHolidays := 0
	for _, s := range sources {
		if s.member == "holidays" {
			nHolidays = len(feObjects(t, 2, "holidays fixture", s.body))
			continue
		}
		srv.putNew(t, "/dav/calendars/"+testUser+"/"+s.member+"/"+s.name, s.body)
	}
	took := waitUntil(t, "holidays mirrored", time.Minute, 200*time.Millisecond, func() (bool, string) {
		n := len(srv.hrefsOf(t, feHolidaysPath))
		return n == nHolidays, fmt.Sprintf("%d of %d holidays in calgate", n, nHolidays)
	})
	t.Logf("setup (build, start, %d PUTs, %d holidays mirrored in %v): %v", len(sources)-1, nHolidays, took.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))

	prefix := map[string]string{"work": feWorkPrefix}
	wantFull := feExpected(t, sources, false, prefix)
	wantBusy := feExpected(t, sources, true, prefix)

	fullPath := "/feeds/" + feFullToken + "/" + feFullName + ".ics"
	busyPath := "/feeds/" + feBusyName + ".ics?token=" + feBusyToken
	fullBody := srv.feGet(t, fullPath, false)
	busyBody := srv.feGet(t, busyPath, false)
	personalBody := srv.feGet(t, personalPath, true)
	// The other forms of the same feeds give the same bytes.
	if b := srv.feGet(t, "/feeds/"+feFullName+".ics?token="+feFullToken2, false); !bytes.Equal(b, fullBody) {
		t.Errorf("the full feed with the second token (query form) differs from the first")
	}
	if b := srv.feGet(t, "/feeds/"+feBusyToken+"/"+feBusyName+".ics", false); !bytes.Equal(b, busyBody) {
		t.Errorf("the busy feed in path form differs from the query form")
	}

	t.Run("go-ical", func(t *testing.T) {
		for _, f := range []struct {
			what string
			body []byte
			want map[string]feItem
		}{{feFullName, fullBody, wantFull}, {feBusyName, busyBody, wantBusy}} {
			feCheckWire(t, f.what, f.body)
			got, _ := feFeedItems(t, f.what, f.body)
			feCompareItems(t, f.what+" (GET, go-ical)", got, f.want)
		}
		feCheckBusy(t, feBusyName+" (GET)", feDecode(t, feBusyName, busyBody))
		if m := feRawLine.FindAllString(feUnfold(busyBody), -1); len(m) > 0 {
			t.Errorf("the busy feed has lines it must not have: %q", m)
		}
		// The cancelled override of the Thunderbird series is excluded from
		// the busy master, which would otherwise bring its instance back.
		if !strings.Contains(feUnfold(busyBody), "\nEXDATE;TZID=Europe/Berlin:20200129T220000\n") {
			t.Errorf("the busy feed's Thunderbird master has no EXDATE for the cancelled override")
		}
		if !strings.Contains(string(fullBody), "X-WR-CALNAME:Alice\\, everything\r\n") ||
			!strings.Contains(string(fullBody), "REFRESH-INTERVAL;VALUE=DURATION:PT1H\r\n") ||
			!strings.Contains(string(fullBody), "X-PUBLISHED-TTL:PT1H\r\n") {
			t.Errorf("the full feed lacks X-WR-CALNAME, REFRESH-INTERVAL or X-PUBLISHED-TTL:\n%.600s", fullBody)
		}
		// Objects are copied as bytes where no transform applies; the
		// prefix rewrites the SUMMARY line only.
		for _, src := range sources {
			if src.member == "holidays" || !strings.HasPrefix(src.name, "p-") && !strings.HasPrefix(src.name, "w-") && src.name != "rich.ics" {
				continue
			}
			b := string(src.body)
			block := b[strings.Index(b, "BEGIN:VEVENT"):strings.Index(b, "END:VCALENDAR")]
			if src.member == "work" {
				block = strings.Replace(block, "\r\nSUMMARY:", "\r\nSUMMARY:"+feWorkPrefix, 1)
			}
			if !strings.Contains(string(fullBody), block) {
				t.Errorf("the full feed does not hold %s/%s as stored (but for the prefix):\n%s", src.member, src.name, block)
			}
		}
		t.Logf("%s: %d bytes, %d items; %s: %d bytes, %d items", feFullName, len(fullBody), len(wantFull), feBusyName, len(busyBody), len(wantBusy))
	})

	t.Run("vdirsyncer", func(t *testing.T) {
		requireTool(t, "vdirsyncer", "/usr/bin/vdirsyncer", "--version")
		for _, f := range []struct {
			what, path string
			body       []byte
			want       map[string]feItem
			busy       bool
		}{
			{feFullName, fullPath, fullBody, wantFull, false},
			{feBusyName, busyPath, busyBody, wantBusy, true},
		} {
			start := time.Now()
			_, bySig := feFeedItems(t, f.what, f.body)
			vdir := feVdirsyncer(t, srv, strings.TrimSuffix(srv.URL, "/")+f.path)
			got, comps := feVdirItems(t, f.what+" vdir", vdir, bySig)
			feCompareItems(t, f.what+" (vdirsyncer)", got, f.want)
			if f.busy {
				feCheckBusy(t, f.what+" (vdirsyncer)", comps)
			}
			t.Logf("vdirsyncer %s: %d items in %v", f.what, len(got), time.Since(start).Round(time.Millisecond))
		}
	})

	t.Run("python3-icalendar", func(t *testing.T) {
		const python = "/usr/bin/python3"
		requireTool(t, "python3-icalendar", python, "-c", "import icalendar")
		for _, f := range []struct {
			what string
			body []byte
		}{{feFullName, fullBody}, {feBusyName, busyBody}, {"alice/personal", personalBody}} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			cmd := exec.CommandContext(ctx, python, "-c",
				`import icalendar,sys; c=icalendar.Calendar.from_ical(sys.stdin.buffer.read()); print(len(c.walk("VEVENT")))`)
			cmd.Env = scrubbedEnv(t)
			cmd.Stdin = bytes.NewReader(f.body)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			cancel()
			if err != nil {
				t.Errorf("python3-icalendar cannot parse %s: %v\n%s", f.what, err, stderr.Bytes())
				continue
			}
			want := len(feDecode(t, f.what, f.body))
			if n, _ := strconv.Atoi(strings.TrimSpace(string(out))); n != want {
				t.Errorf("python3-icalendar finds %s VEVENTs in %s, go-ical %d", strings.TrimSpace(string(out)), f.what, want)
			}
		}
	})

	// Last: calgate export needs calgate stopped.
	t.Run("export", func(t *testing.T) {
		srv.stop(t)
		start := time.Now()
		for _, f := range []struct {
			target string
			want   []byte
		}{{feFullName, fullBody}, {feBusyName, busyBody}, {testUser + "/personal", personalBody}} {
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			cmd := exec.CommandContext(ctx, calgateBinary(t), "export", "-config", config, f.target)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			cancel()
			if err != nil {
				t.Errorf("calgate export %s: %v\n%s", f.target, err, stderr.Bytes())
				continue
			}
			if !bytes.Equal(out, f.want) {
				t.Errorf("calgate export %s: %d bytes differ from the %d bytes GET returned (first difference at byte %d)",
					f.target, len(out), len(f.want), feFirstDiff(out, f.want))
			}
		}
		t.Logf("3 exports: %v", time.Since(start).Round(time.Millisecond))
	})
	for _, secret := range []string{feFullToken, feFullToken2, feBusyToken} {
		if strings.Contains(srv.logs.String(), secret) {
			t.Errorf("calgate logged a feed token")
		}
	}
	t.Logf("total: %v", time.Since(begin).Round(time.Millisecond))
}

// feFirstDiff returns the index of the first byte where a and b differ.
func feFirstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

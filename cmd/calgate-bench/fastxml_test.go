package main

import (
	"context"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/calgate/calgate/cache"
	"github.com/calgate/calgate/gateway"
)

// davServer is calgate's gateway in this process, over a store in a
// temporary directory, with alice's calendar bench holding generated
// events.
type davServer struct {
	cl   *client
	base string // http://127.0.0.1:PORT
	cal  string // the URL of alice's calendar bench, with a final slash
	evs  []event
}

// newDAVServer starts a gateway and PUTs n events of seed 7 into
// alice/bench.
func newDAVServer(tb testing.TB, n int) *davServer {
	tb.Helper()
	st, err := cache.Open(filepath.Join(tb.TempDir(), "calgate.db"), cache.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	h, err := gateway.New(gateway.Options{
		Store:  st,
		Users:  []gateway.User{{Name: "alice", PasswordHash: string(hash)}},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(h)
	tb.Cleanup(srv.Close)
	if _, err := st.CreateCalendar(cache.Calendar{User: "alice", ID: "bench", DisplayName: "bench", Components: []string{"VEVENT"}}); err != nil {
		tb.Fatal(err)
	}
	s := &davServer{cl: newClient("alice", "secret", 2, time.Minute), base: srv.URL, cal: srv.URL + "/dav/calendars/alice/bench/"}
	tb.Cleanup(s.cl.http.CloseIdleConnections)
	if s.evs, err = generate(7, n); err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < n; i += 2 {
				if err := s.put(tb.Context(), i, 1, "*"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatal(err)
	}
	return s
}

// put stores revision rev of event i, new if ifNoneMatch is "*".
func (s *davServer) put(ctx context.Context, i, rev int, ifNoneMatch string) error {
	hdr := map[string]string{"Content-Type": "text/calendar; charset=utf-8"}
	if ifNoneMatch != "" {
		hdr["If-None-Match"] = ifNoneMatch
	}
	status, _, body, _, err := s.cl.do(ctx, http.MethodPut, s.cal+s.evs[i].Name, hdr, s.evs[i].body(rev))
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("PUT %s: status %d: %s", s.evs[i].Name, status, body)
	}
	return nil
}

// ask sends a PROPFIND or REPORT to u and returns the status and body.
func (s *davServer) ask(tb testing.TB, method, u, depth string, body []byte) (int, []byte) {
	tb.Helper()
	hdr := map[string]string{"Content-Type": "application/xml; charset=utf-8"}
	if depth != "" {
		hdr["Depth"] = depth
	}
	status, _, data, _, err := s.cl.do(tb.Context(), method, u, hdr, body)
	if err != nil {
		tb.Fatal(err)
	}
	return status, data
}

// capture returns the answers of the server to the requests of the tool,
// by name: discovery, PROPFIND Depth 0 and 1, calendar-query with and
// without expansion, multiget with missing members, sync-collection from
// scratch, after a change and after a deletion, and an expired token.
func (s *davServer) capture(tb testing.TB) map[string][]byte {
	tb.Helper()
	out := make(map[string][]byte)
	want207 := func(name string, status int, body []byte) {
		tb.Helper()
		if status != http.StatusMultiStatus {
			tb.Fatalf("%s: status %d, want 207: %.300s", name, status, body)
		}
		out[name] = body
	}
	ms := func(body []byte) *multistatus {
		tb.Helper()
		var m multistatus
		if err := xml.Unmarshal(body, &m); err != nil {
			tb.Fatal(err)
		}
		return &m
	}
	home := s.base + "/dav/calendars/alice/"

	status, body := s.ask(tb, "PROPFIND", home, "0", []byte(principalBody))
	want207("principal", status, body)
	p, ok := ms(body).Responses[0].ok200()
	if !ok || p.CurrentUserPrincipal == nil || len(p.CurrentUserPrincipal.Hrefs) != 1 {
		tb.Fatalf("no current-user-principal in %s", body)
	}
	status, body = s.ask(tb, "PROPFIND", s.base+p.CurrentUserPrincipal.Hrefs[0], "0", []byte(homeSetBody))
	want207("home_set", status, body)
	status, body = s.ask(tb, "PROPFIND", home, "1", []byte(propfindBody))
	want207("propfind_home_d1", status, body)
	status, body = s.ask(tb, "PROPFIND", s.cal, "0", []byte(propfindBody))
	want207("propfind_d0", status, body)
	token := *must(ms(body).Responses[0].ok200()).SyncToken
	status, body = s.ask(tb, "PROPFIND", s.cal, "1", []byte(propfindBody))
	want207("propfind_d1", status, body)
	status, body = s.ask(tb, "PROPFIND", s.cal, "1", []byte(`<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:allprop/></D:propfind>`))
	want207("propfind_allprop", status, body)
	status, body = s.ask(tb, "REPORT", s.cal, "1", queryBody(monthStart, monthEnd, false))
	want207("query_month", status, body)
	status, body = s.ask(tb, "REPORT", s.cal, "1", queryBody(weekStart, weekEnd, true))
	want207("query_week_expand", status, body)
	var paths []string
	for i := range min(len(s.evs), 12) {
		paths = append(paths, strings.TrimPrefix(s.cal, s.base)+s.evs[i].Name)
		if i%4 == 1 {
			paths = append(paths, strings.TrimPrefix(s.cal, s.base)+fmt.Sprintf("missing-%d.ics", i))
		}
	}
	status, body = s.ask(tb, "REPORT", s.cal, "", multigetBody(paths))
	want207("multiget_404", status, body)
	status, body = s.ask(tb, "REPORT", s.cal, "", syncBody(""))
	want207("sync_initial", status, body)
	if err := s.put(tb.Context(), 1, 2, ""); err != nil {
		tb.Fatal(err)
	}
	if status, _, _, _, err := s.cl.do(tb.Context(), http.MethodDelete, s.cal+s.evs[2].Name, nil, nil); err != nil || status/100 != 2 {
		tb.Fatalf("DELETE: %d %v", status, err)
	}
	status, body = s.ask(tb, "REPORT", s.cal, "", syncBody(token))
	want207("sync_after_change", status, body)
	status, body = s.ask(tb, "REPORT", s.cal, "", syncBody(token+"0"))
	if status == http.StatusMultiStatus {
		tb.Fatalf("an unknown sync-token: status 207")
	}
	out["sync_bad_token"] = body // a DAV:error, not a multistatus
	return out
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("must: not ok")
	}
	return v
}

// sameAsXML checks that fastMultistatus gives what encoding/xml gives for
// body. It reports whether fastMultistatus left the body to encoding/xml.
func sameAsXML(t testing.TB, name string, body []byte) (fallback bool) {
	t.Helper()
	var want multistatus
	wantErr := xml.Unmarshal(body, &want)
	got, err := fastMultistatus(body)
	if err == errNonASCIIName {
		fallback = true
		got, err = decodeMultistatus(body)
	}
	switch {
	case wantErr != nil && err == nil:
		t.Errorf("%s: encoding/xml fails (%v), fastMultistatus gives %s\nbody: %q", name, wantErr, dump(got), body)
	case wantErr == nil && err != nil:
		t.Errorf("%s: fastMultistatus fails (%v), encoding/xml gives %s\nbody: %q", name, err, dump(&want), body)
	case wantErr == nil && !reflect.DeepEqual(&want, got):
		t.Errorf("%s: fastMultistatus gives\n%s\nencoding/xml gives\n%s\nbody: %q", name, dump(got), dump(&want), body)
	}
	return fallback
}

// dump prints a multistatus with the values behind its pointers.
func dump(ms *multistatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "XMLName=%q sync-token=%q\n", ms.XMLName, ms.SyncToken)
	str := func(p *string) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", *p)
	}
	hp := func(p *hrefProp) string {
		if p == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", p.Hrefs)
	}
	for _, r := range ms.Responses {
		fmt.Fprintf(&b, "  response hrefs=%q (nil %v) status=%q\n", r.Hrefs, r.Hrefs == nil, r.Status)
		for _, ps := range r.Propstats {
			p := ps.Prop
			fmt.Fprintf(&b, "    propstat status=%q etag=%s sync-token=%s resourcetype=%v cup=%s home-set=%s data=%s\n",
				ps.Status, str(p.ETag), str(p.SyncToken), p.ResourceType != nil, hp(p.CurrentUserPrincipal), hp(p.CalendarHomeSet), str(p.CalendarData))
		}
	}
	return b.String()
}

// styles rewrite a calgate answer (prefixes d: and c:, character
// references for CR) the way other servers write theirs.
var styles = []struct {
	name    string
	rewrite func(string) string
}{
	{"D: and C:", func(s string) string { return prefixes(s, "D:", "C:") }},
	{"ns0: and ns1:", func(s string) string { return prefixes(s, "ns0:", "ns1:") }},
	{"default name space DAV:", func(s string) string {
		return strings.NewReplacer("<d:", "<", "</d:", "</", "xmlns:d=", "xmlns=").Replace(s)
	}},
	{"default name space CalDAV", func(s string) string {
		return strings.NewReplacer("<c:", "<", "</c:", "</", "xmlns:c=", "xmlns=").Replace(s)
	}},
	{"CalDAV declared where used", func(s string) string {
		// The root no longer declares c:, so <c:calendar/> in a
		// resourcetype has an undeclared prefix.
		s = strings.Replace(s, ` xmlns:c="urn:ietf:params:xml:ns:caldav"`, "", 1)
		s = strings.ReplaceAll(s, "<c:calendar-home-set>", `<c:calendar-home-set xmlns:c="urn:ietf:params:xml:ns:caldav">`)
		return strings.ReplaceAll(s, "<c:calendar-data>", `<c:calendar-data xmlns:c='urn:ietf:params:xml:ns:caldav'>`)
	}},
	{"raw CR LF", func(s string) string { return strings.ReplaceAll(s, "&#13;", "\r") }},
	{"raw CR alone", func(s string) string { return strings.ReplaceAll(s, "&#13;\n", "\r") }},
	{"hex references", func(s string) string {
		return strings.NewReplacer("&#13;", "&#xD;", "&#34;", "&#x22;").Replace(s)
	}},
	{"named entities", func(s string) string { return strings.ReplaceAll(s, "&#34;", "&quot;") }},
	{"CDATA calendar-data", cdataCalendarData},
	{"indented", func(s string) string { return strings.ReplaceAll(s, "><", ">\n  <") }},
	{"indented CRLF", func(s string) string { return strings.ReplaceAll(s, "><", ">\r\n\t<") }},
	{"absolute hrefs", func(s string) string {
		return strings.ReplaceAll(s, "<d:href>/", "<d:href>https://cal.example.org:8443/")
	}},
	{"comments", func(s string) string {
		s = strings.ReplaceAll(s, "<d:response>", "<!-- a response --><d:response><!---->")
		return strings.ReplaceAll(s, "</d:href>", "<!-- x - y --></d:href>")
	}},
	{"no declaration", func(s string) string {
		if i := strings.Index(s, "?>"); i >= 0 && strings.HasPrefix(s, "<?xml") {
			return s[i+2:]
		}
		return s
	}},
	{"declaration and doctype", func(s string) string {
		return `<?xml version='1.0' encoding='UTF-8' standalone="yes"?>` + "\n<!DOCTYPE multistatus [\n<!ENTITY x 'y'> <!-- <d:multistatus> -->\n]>\n" + s
	}},
	{"nested unknown properties", func(s string) string {
		return strings.ReplaceAll(s, "<d:prop>", `<d:prop><x:unknown xmlns:x="urn:x" a='1' b="2"><x:deeper><d:href>/not/an/href</d:href><d:getetag>"no"</d:getetag>text &amp; more</x:deeper></x:unknown><d:displayname>name</d:displayname>`)
	}},
	{"d redeclared inside", func(s string) string {
		// Inside x, d: is another name space: nothing there is DAV:.
		return strings.ReplaceAll(s, "<d:response>", `<x xmlns="urn:x" xmlns:d="urn:not-dav"><d:response><d:href>/no</d:href></d:response></x><d:response>`)
	}},
	{"DAV: redeclared on each response", func(s string) string {
		return strings.ReplaceAll(s, "<d:response>", `<d:response xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">`)
	}},
	{"xml:lang, a stylesheet, an error", func(s string) string {
		s = strings.ReplaceAll(s, "<d:status>", `<d:status xml:lang="en"><?xml-stylesheet href="a"?>`)
		return strings.ReplaceAll(s, "</d:multistatus>", `<d:error xmlns:e="urn:x"><e:x/></d:error></d:multistatus>`)
	}},
	{"byte order mark", func(s string) string { return "\ufeff" + s }},
	{"trailing garbage", func(s string) string { return s + "<d:multistatus xmlns:d='DAV:'><unclosed &bad;" }},
}

// prefixes gives the prefixes dav and caldav to the elements of the name
// spaces DAV: and CalDAV in a calgate answer.
func prefixes(s, dav, caldav string) string {
	return strings.NewReplacer("<d:", "<"+dav, "</d:", "</"+dav, "xmlns:d=", "xmlns:"+strings.TrimSuffix(dav, ":")+"=",
		"<c:", "<"+caldav, "</c:", "</"+caldav, "xmlns:c=", "xmlns:"+strings.TrimSuffix(caldav, ":")+"=").Replace(s)
}

var calendarDataRE = regexp.MustCompile(`(?s)(<c:calendar-data[^>]*>)(.*?)(</c:calendar-data>)`)

// cdataCalendarData puts each calendar-data into a CDATA section, with
// raw CR LF line ends (which decoding turns into LF).
func cdataCalendarData(s string) string {
	return calendarDataRE.ReplaceAllStringFunc(s, func(m string) string {
		parts := calendarDataRE.FindStringSubmatch(m)
		text := strings.NewReplacer("&#13;", "\r", "&lt;", "<", "&gt;", ">", "&quot;", `"`, "&apos;", "'", "&amp;", "&").Replace(parts[2])
		return parts[1] + "<![CDATA[" + strings.ReplaceAll(text, "]]>", "]]]]><![CDATA[>") + "]]>" + parts[3]
	})
}

// handWritten are answers in the style of other servers, and corner cases
// of XML; each is a whole body.
var handWritten = map[string]string{
	"nextcloud propfind": `<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.org/ns">
 <d:response>
  <d:href>/remote.php/dav/calendars/alice/personal/</d:href>
  <d:propstat>
   <d:prop>
    <d:resourcetype><d:collection/><cal:calendar/></d:resourcetype>
    <d:sync-token>http://sabre.io/ns/sync/42</d:sync-token>
   </d:prop>
   <d:status>HTTP/1.1 200 OK</d:status>
  </d:propstat>
  <d:propstat>
   <d:prop>
    <d:getetag/>
   </d:prop>
   <d:status>HTTP/1.1 404 Not Found</d:status>
  </d:propstat>
 </d:response>
 <d:response>
  <d:href>/remote.php/dav/calendars/alice/personal/a%20b.ics</d:href>
  <d:propstat>
   <d:prop>
    <d:resourcetype/>
    <d:getetag>&quot;5e1c&quot;</d:getetag>
   </d:prop>
   <d:status>HTTP/1.1 200 OK</d:status>
  </d:propstat>
 </d:response>
</d:multistatus>
`,
	"radicale report": `<?xml version='1.0' encoding='utf-8'?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><response><href>/alice/cal/x.ics</href><propstat><prop><getetag>"2c4e"</getetag><C:calendar-data>BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//x//y//EN
BEGIN:VEVENT
UID:x
SUMMARY:a &lt;b&gt; &amp; c
DTSTART:20260310T090000Z
END:VEVENT
END:VCALENDAR
</C:calendar-data></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>`,
	"apple ns0": `<?xml version="1.0" encoding="UTF-8"?>
<ns0:multistatus xmlns:ns0="DAV:" xmlns:ns1="urn:ietf:params:xml:ns:caldav"><ns0:response><ns0:href>https://p01-caldav.example.com/123/calendars/home/x.ics</ns0:href><ns0:propstat><ns0:prop><ns0:getetag>"C=1@U=2"</ns0:getetag><ns1:calendar-data>BEGIN:VCALENDAR&#13;
BEGIN:VEVENT&#13;
UID:x&#13;
END:VEVENT&#13;
END:VCALENDAR&#13;
</ns1:calendar-data></ns0:prop><ns0:status>HTTP/1.1 200 OK</ns0:status></ns0:propstat></ns0:response></ns0:multistatus>`,
	"google raw CRLF":     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<D:multistatus xmlns:D=\"DAV:\" xmlns:caldav=\"urn:ietf:params:xml:ns:caldav\" xmlns:cs=\"http://calendarserver.org/ns/\" xmlns:ical=\"http://apple.com/ns/ical/\">\r\n<D:response>\r\n<D:href>/caldav/v2/alice%40example.com/events/x.ics</D:href>\r\n<D:propstat>\r\n<D:status>HTTP/1.1 200 OK</D:status>\r\n<D:prop>\r\n<D:getetag>\"63812\"</D:getetag>\r\n<caldav:calendar-data>BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n</caldav:calendar-data>\r\n</D:prop>\r\n</D:propstat>\r\n</D:response>\r\n</D:multistatus>\r\n",
	"CDATA calendar-data": `<D:multistatus xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:response><D:href>/c/x.ics</D:href><D:propstat><D:prop><C:calendar-data><![CDATA[BEGIN:VCALENDAR` + "\r\n" + `SUMMARY:<b> & ]]` + "\r" + `]]><![CDATA[>END:VCALENDAR` + "\r\n" + `]]></C:calendar-data></D:prop><D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response></D:multistatus>`,
	"sync with 404": `<?xml version="1.0" encoding="utf-8" ?>
<D:multistatus xmlns:D="DAV:">
  <D:response>
    <D:href>http://www.example.com/home/cyrusdaboo/calendar/test.ics</D:href>
    <D:propstat>
      <D:prop><D:getetag>"00001-abcd1"</D:getetag></D:prop>
      <D:status>HTTP/1.1 200 OK</D:status>
    </D:propstat>
  </D:response>
  <D:response>
    <D:href>http://www.example.com/home/cyrusdaboo/calendar/vcard.vcf</D:href>
    <D:status>HTTP/1.1 404 Not Found</D:status>
  </D:response>
  <D:sync-token>http://example.com/ns/sync/1234</D:sync-token>
</D:multistatus>`,
	"principal":                 `<multistatus xmlns="DAV:"><response><href>/</href><propstat><prop><current-user-principal><href>/principals/users/alice/</href></current-user-principal></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>`,
	"principal unauthenticated": `<multistatus xmlns="DAV:"><response><href>/</href><propstat><prop><current-user-principal><unauthenticated/></current-user-principal></prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>`,
	"home set hrefs": `<A:multistatus xmlns:A="DAV:"><A:response><A:href>/p/</A:href><A:propstat><A:prop><B:calendar-home-set xmlns:B="urn:ietf:params:xml:ns:caldav"><A:href>/cal/a/</A:href><A:href>
		/cal/b/
	</A:href><B:href>/not-dav/</B:href></B:calendar-home-set></A:prop><A:status>HTTP/1.1 200 OK</A:status></A:propstat></A:response></A:multistatus>`,
	"repeated fields":                 `<multistatus xmlns="DAV:"><sync-token>a</sync-token><sync-token>b</sync-token><response><href>1</href><status>s1</status><href>2</href><status>s2</status><propstat><status>p1</status><prop><getetag>e1</getetag><current-user-principal><href>u1</href></current-user-principal></prop><prop><getetag>e2</getetag><resourcetype/><current-user-principal><href>u2</href></current-user-principal></prop><status>p2</status></propstat></response></multistatus>`,
	"empty and later empty":           `<multistatus xmlns="DAV:"><response><status>x</status><status/><propstat><prop><getetag/><sync-token></sync-token><current-user-principal/><resourcetype>text<collection/></resourcetype></prop></propstat></response></multistatus>`,
	"text around children":            `<multistatus xmlns="DAV:">root text<response>  <href>a<x>b<href>c</href></x>d<!-- e -->f<![CDATA[g]]>h<?pi i?>j</href></response>tail</multistatus>`,
	"entities and references":         `<multistatus xmlns="DAV:"><sync-token>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;&#0067;&#x000044;&#13;&#xD;&#10;&#9;&#xD800;&#xDFFF;&#x10FFFF;&#xFFFD;</sync-token></multistatus>`,
	"line ends":                       "<multistatus xmlns=\"DAV:\"><sync-token>a\r\nb\rc\n\rd\r\r\ne&#13;\nf\r&#10;g\r</sync-token></multistatus>",
	"attributes":                      `<multistatus xmlns="DAV:" a='x"y' b="x'y" c = "&amp;&#60;&#x3E;" d="]]>" e='` + "\r\n\t" + `'><response x:y="1" xmlns:x="urn:x"><href>h</href></response></multistatus>`,
	"xmlns with references":           `<multistatus xmlns="&#68;A&#x56;:"><response><href>h</href></response><C:response xmlns:C="DAV&#58;"><C:href>i</C:href></C:response></multistatus>`,
	"default reset":                   `<D:multistatus xmlns:D="DAV:" xmlns="DAV:"><response><href>1</href></response><x xmlns=""><response><href>2</href></response></x><response xmlns=""><href>3</href></response><response><href>4</href></response></D:multistatus>`,
	"prefix scopes":                   `<D:multistatus xmlns:D="DAV:"><E:response xmlns:E="DAV:"><E:href>1</E:href><D:href>2</D:href></E:response><E:response><E:href>unbound</E:href></E:response><D:response xmlns:D="urn:x"><D:href>3</D:href></D:response><D:response><D:href>4</D:href></D:response></D:multistatus>`,
	"undeclared prefix in DAV: scope": `<multistatus xmlns="DAV:"><E:response><href>1</href></E:response><response><E:href>2</E:href><href>3</href></response></multistatus>`,
	"reserved prefixes":               `<D:multistatus xmlns:D="DAV:" xmlns:xmlns="DAV:" xmlns:xml="DAV:"><xmlns:response><D:href>1</D:href></xmlns:response><xml:response><D:href>2</D:href></xml:response><D:response><xmlns><D:href>3</D:href></xmlns><D:href>4</D:href></D:response></D:multistatus>`,
	"odd names":                       `<D:multistatus xmlns:D="DAV:" xmlns="DAV:"><:response><href>1</href></:response><response:><href>2</href></response:><D:response a:="1" :b="2" xmlns:="3"><D:href>3</D:href></D:response><_x.y-z/></D:multistatus>`,
	"duplicate attributes":            `<multistatus xmlns="urn:x" xmlns="DAV:"><response xmlns:D="urn:x" xmlns:D="DAV:"><D:href>1</D:href></response></multistatus>`,
	"spaces in tags":                  "<multistatus\n\txmlns = 'DAV:'\r\n><response ><href\t>h</href\n></response\r></multistatus >",
	"self-closing root":               `<D:multistatus xmlns:D="DAV:"/>`,
	"text before the root":            "hello &amp; <![CDATA[x]]> <!-- c --> <?pi?>\n<multistatus xmlns='DAV:'/>",
	"doctype with subset":             `<!DOCTYPE D:multistatus PUBLIC "-//x//DTD y//EN" "a>b" [<!ELEMENT a (b)> <!ATTLIST a c CDATA "<>"> <!-- > --> <? ?>]><multistatus xmlns='DAV:'><!DOCTYPE inside><sync-token>t</sync-token></multistatus>`,
	"directive oddities":              `<!>x'>'"">><!x<y<!--z-->>>><!'><multistatus xmlns='DAV:'><sync-token>t</sync-token></multistatus>`,
	"declarations":                    `<?xml version="1.0"?><?xml encoding="utf-8"?><?xml version='1.0' encoding='Utf-8'?><?xml?><?xml-stylesheet version="2.0"?><?XML version="2.0"?><multistatus xmlns='DAV:'/>`,
	"declaration oddities":            `<?xml versions="2.0" version=1.1 version="1.0"?><?xml encoding=x encoding="utf-8"?><?xml encoding= "latin1"?><multistatus xmlns='DAV:'/>`,
	"deep unknown nesting":            `<multistatus xmlns="DAV:">` + strings.Repeat("<a>", 3000) + strings.Repeat("</a>", 3000) + `<sync-token>t</sync-token></multistatus>`,
	"non-ASCII text":                  `<multistatus xmlns="DAV:"><sync-token>Grüße 日本 𝄞 ￼ &#x1F600;</sync-token></multistatus>`,
	"non-ASCII names":                 `<multistatus xmlns="DAV:"><prüfung/><response><href>h</href></response></multistatus>`,
	"caldav in DAV: slots":            `<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:response/><response><C:href>x</C:href><propstat><prop><C:getetag>x</C:getetag><calendar-data>x</calendar-data><C:current-user-principal/><calendar-home-set/></prop></propstat></response></multistatus>`,
}

// malformed are bodies that encoding/xml refuses, or nearly so.
var malformed = map[string]string{
	"empty":                "",
	"spaces":               " \n\t",
	"text only":            "hello",
	"wrong root":           `<D:error xmlns:D="DAV:"><D:valid-sync-token/></D:error>`,
	"root without ns":      `<multistatus><response/></multistatus>`,
	"root in other ns":     `<multistatus xmlns="urn:x"/>`,
	"root in CalDAV ns":    `<C:multistatus xmlns:C="urn:ietf:params:xml:ns:caldav"/>`,
	"undeclared prefix":    `<D:multistatus/>`,
	"mismatched tags":      `<multistatus xmlns="DAV:"><response><href>h</response></href></multistatus>`,
	"mismatched prefixes":  `<D:multistatus xmlns:D="DAV:" xmlns:E="DAV:"><D:response></E:response></D:multistatus>`,
	"unclosed":             `<multistatus xmlns="DAV:"><response><href>h</href>`,
	"unclosed root":        `<multistatus xmlns="DAV:">`,
	"end before root":      `</x><multistatus xmlns="DAV:"/>`,
	"bad entity":           `<multistatus xmlns="DAV:"><sync-token>&nbsp;</sync-token></multistatus>`,
	"entity no semicolon":  `<multistatus xmlns="DAV:"><sync-token>&amp</sync-token></multistatus>`,
	"bare ampersand":       `<multistatus xmlns="DAV:"><sync-token>a & b</sync-token></multistatus>`,
	"empty reference":      `<multistatus xmlns="DAV:"><sync-token>&#;</sync-token></multistatus>`,
	"empty hex reference":  `<multistatus xmlns="DAV:"><sync-token>&#x;</sync-token></multistatus>`,
	"uppercase X":          `<multistatus xmlns="DAV:"><sync-token>&#X43;</sync-token></multistatus>`,
	"bad hex digit":        `<multistatus xmlns="DAV:"><sync-token>&#x4G;</sync-token></multistatus>`,
	"reference too big":    `<multistatus xmlns="DAV:"><sync-token>&#x110000;</sync-token></multistatus>`,
	"reference overflow":   `<multistatus xmlns="DAV:"><sync-token>&#99999999999999999999999;</sync-token></multistatus>`,
	"reference to NUL":     `<multistatus xmlns="DAV:"><sync-token>&#0;</sync-token></multistatus>`,
	"reference to FFFE":    `<multistatus xmlns="DAV:"><sync-token>&#xFFFE;</sync-token></multistatus>`,
	"reference to ESC":     `<multistatus xmlns="DAV:"><x>&#27;</x></multistatus>`,
	"entity in attribute":  `<multistatus xmlns="DAV:" a="&x;"/>`,
	"invalid UTF-8 text":   "<multistatus xmlns=\"DAV:\"><sync-token>\xff</sync-token></multistatus>",
	"invalid UTF-8 skip":   "<multistatus xmlns=\"DAV:\"><x>a\xc3</x></multistatus>",
	"invalid UTF-8 attr":   "<multistatus xmlns=\"DAV:\" a=\"\xe2\x82\"/>",
	"invalid UTF-8 CDATA":  "<multistatus xmlns=\"DAV:\"><![CDATA[\xed\xa0\x80]]></multistatus>",
	"invalid UTF-8 before": "\xff<multistatus xmlns=\"DAV:\"/>",
	"control character":    "<multistatus xmlns=\"DAV:\"><sync-token>a\x01b</sync-token></multistatus>",
	"NUL in attribute":     "<multistatus xmlns=\"DAV:\" a=\"\x00\"/>",
	"U+FFFF in text":       "<multistatus xmlns=\"DAV:\"><sync-token>\uffff</sync-token></multistatus>",
	"]]> in text":          `<multistatus xmlns="DAV:"><sync-token>a]]>b</sync-token></multistatus>`,
	"< in attribute":       `<multistatus xmlns="DAV:" a="<"/>`,
	"unquoted attribute":   `<multistatus xmlns="DAV:" a=b/>`,
	"attribute no value":   `<multistatus xmlns="DAV:" a/>`,
	"slash space":          `<multistatus xmlns="DAV:"/ >`,
	"end tag attribute":    `<multistatus xmlns="DAV:"></multistatus a="1">`,
	"space after <":        `< multistatus xmlns="DAV:"/>`,
	"digit name":           `<multistatus xmlns="DAV:"><1a/></multistatus>`,
	"dot name":             `<multistatus xmlns="DAV:"><.a/></multistatus>`,
	"two colons":           `<a:b:c xmlns:a="DAV:"/>`,
	"two colons attribute": `<multistatus xmlns="DAV:" a:b:c="1"/>`,
	"bad comment":          `<multistatus xmlns="DAV:"><!- x --></multistatus>`,
	"-- in comment":        `<multistatus xmlns="DAV:"><!-- a -- b --></multistatus>`,
	"unclosed comment":     `<multistatus xmlns="DAV:"><!-- a ->`,
	"bad CDATA":            `<multistatus xmlns="DAV:"><![CDATX[a]]></multistatus>`,
	"unclosed CDATA":       `<multistatus xmlns="DAV:"><![CDATA[a]]`,
	"unclosed directive":   `<!DOCTYPE x [ <!-- > ]> --> <multistatus xmlns="DAV:"/>`,
	"version 1.1":          `<?xml version="1.1"?><multistatus xmlns="DAV:"/>`,
	"latin1":               `<?xml version="1.0" encoding="ISO-8859-1"?><multistatus xmlns="DAV:"/>`,
	"declaration inside":   `<multistatus xmlns="DAV:"><x><?xml version="2"?></x></multistatus>`,
	"PI without target":    `<? x?><multistatus xmlns="DAV:"/>`,
	"PI unclosed":          `<multistatus xmlns="DAV:"><?x ?</multistatus>`,
	"entity from DOCTYPE":  `<!DOCTYPE x [<!ENTITY e "v">]><multistatus xmlns="DAV:"><sync-token>&e;</sync-token></multistatus>`,
	"non-ASCII bad name":   `<multistatus xmlns="DAV:"><a÷/></multistatus>`,
}

// small is a body with a bit of everything, cut at every offset and
// mutated byte by byte.
const small = "<?xml version=\"1.0\"?><!DOCTYPE d><D:multistatus xmlns:D=\"DAV:\" xmlns:C='urn:ietf:params:xml:ns:caldav'>" +
	"<D:response><D:href>/a&amp;b</D:href><!-- c --><D:propstat><D:prop><D:getetag>\"1\"</D:getetag>" +
	"<C:calendar-data>X&#13;\nY\r\nZ<![CDATA[<&>]]></C:calendar-data><D:resourcetype><D:collection/></D:resourcetype>" +
	"<D:current-user-principal><D:href>/p/</D:href></D:current-user-principal><x:y xmlns:x=\"urn:x\" a=\"1\"/></D:prop>" +
	"<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response><D:sync-token>t</D:sync-token></D:multistatus>"

func TestMultistatusDecoder(t *testing.T) {
	s := newDAVServer(t, 40)
	captured := s.capture(t)
	for name, body := range captured {
		if sameAsXML(t, "calgate "+name, body) {
			t.Errorf("calgate %s: left to encoding/xml", name)
		}
		for _, st := range styles {
			if sameAsXML(t, "calgate "+name+", "+st.name, []byte(st.rewrite(string(body)))) {
				t.Errorf("calgate %s, %s: left to encoding/xml", name, st.name)
			}
		}
	}
	for name, body := range handWritten {
		fallback := sameAsXML(t, name, []byte(body))
		if fallback != strings.HasPrefix(name, "non-ASCII names") {
			t.Errorf("%s: left to encoding/xml: %v", name, fallback)
		}
		var ms multistatus
		if name != "non-ASCII names" && xml.Unmarshal([]byte(body), &ms) != nil {
			t.Errorf("%s: encoding/xml refuses it; move it to malformed", name)
		}
	}
	for name, body := range malformed {
		sameAsXML(t, name, []byte(body))
	}
	for i := range len(small) {
		sameAsXML(t, fmt.Sprintf("small cut at %d", i), []byte(small[:i]))
	}
	for i := range len(small) {
		for _, c := range []byte("<>&;\"'/!?-[]:=x \r\x00\x80") {
			b := []byte(small)
			b[i] = c
			sameAsXML(t, fmt.Sprintf("small with %q at %d", c, i), b)
		}
	}

	// The values behind a few of the rules, spelled out.
	ms, err := decodeMultistatus([]byte(handWritten["line ends"]))
	if err != nil || ms.SyncToken != "a\nb\nc\n\nd\n\ne\r\nf\n\ng\n" {
		t.Errorf("line ends: %q, %v", ms.SyncToken, err)
	}
	ms, err = decodeMultistatus([]byte(handWritten["text around children"]))
	if err != nil || len(ms.Responses) != 1 || len(ms.Responses[0].Hrefs) != 1 || ms.Responses[0].Hrefs[0] != "adfghj" {
		t.Errorf("text around children: %v", err)
	}
	ms, err = decodeMultistatus([]byte(handWritten["repeated fields"]))
	if err != nil || ms.SyncToken != "b" || ms.Responses[0].Status != "s2" || *ms.Responses[0].Propstats[0].Prop.ETag != "e2" ||
		len(ms.Responses[0].Propstats[0].Prop.CurrentUserPrincipal.Hrefs) != 2 {
		t.Errorf("repeated fields: %v\n%s", err, dump(ms))
	}
}

// FuzzParseMultistatus checks fastMultistatus against encoding/xml.
func FuzzParseMultistatus(f *testing.F) {
	s := newDAVServer(f, 3)
	for _, body := range s.capture(f) {
		f.Add(body)
		for _, st := range styles {
			f.Add([]byte(st.rewrite(string(body))))
		}
	}
	for _, body := range handWritten {
		f.Add([]byte(body))
	}
	for _, body := range malformed {
		f.Add([]byte(body))
	}
	f.Add([]byte(small))
	f.Fuzz(func(t *testing.T, body []byte) {
		sameAsXML(t, "fuzz", body)
	})
}

// BenchmarkMultistatusDecoder decodes the month's calendar-query answer of
// calgate at N=10,000 (about 1 MB) and other answers, with encoding/xml and
// with fastMultistatus.
func BenchmarkMultistatusDecoder(b *testing.B) {
	s := newDAVServer(b, 10000)
	captured := s.capture(b)
	for _, name := range []string{"query_month", "query_week_expand", "propfind_d1"} {
		body := captured[name]
		b.Run(name+"/encoding-xml", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				var ms multistatus
				if err := xml.Unmarshal(body, &ms); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/fast", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := fastMultistatus(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package gateway

import (
	"net/http"
	"testing"
)

// TestCheckXML pins what checkXML refuses beyond xml.Unmarshal, which
// stops at the end of the first element: each refused body was answered
// as if it were well-formed until FuzzXMLBody found it.
func TestCheckXML(t *testing.T) {
	const pf = `<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>`
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"plain", pf, true},
		{"declaration", `<?xml version="1.0" encoding="utf-8"?>` + "\n" + pf, true},
		{"byte order mark", "\xef\xbb\xbf" + `<?xml version="1.0"?>` + pf, true},
		{"comments and space", "<!-- a -->\n" + pf + "\n<!-- b -->\r\n", true},
		{"prefix declared by an ancestor", `<d:propfind xmlns:d="DAV:" xmlns:x="urn:x"><d:prop><x:a x:b="1"/></d:prop></d:propfind>`, true},
		{"default namespace", `<propfind xmlns="DAV:"><prop><getetag/></prop></propfind>`, true},
		{"xml prefix", `<d:propfind xmlns:d="DAV:" xml:lang="en"><d:allprop/></d:propfind>`, true},

		{"second root", pf + pf, false},
		{"text after the root", pf + "trailing", false},
		{"text before the root", "leading" + pf, false},
		{"declaration after the root", pf + `<?xml version="1.0"?>`, false},
		{"stray end tag after the root", pf + "</x><y>", false},
		{"stray end tag before the root", "</x>" + pf, false},
		{"mismatched end tag", `<d:propfind xmlns:d="DAV:"><d:prop></d:propfind>`, false},
		{"repeated attribute", `<d:propfind xmlns:d="DAV:" a="1" a="2"><d:allprop/></d:propfind>`, false},
		{"undeclared element prefix", `<d:propfind xmlns:d="DAV:"><d:prop><x:a/></d:prop></d:propfind>`, false},
		{"undeclared attribute prefix", `<d:propfind xmlns:d="DAV:" x:a="1"><d:allprop/></d:propfind>`, false},
		{"prefix out of scope", `<d:propfind xmlns:d="DAV:"><d:prop xmlns:x="urn:x"/><x:a/></d:propfind>`, false},
		{"empty prefix declaration", `<d:propfind xmlns:d="DAV:" xmlns:x=""><d:allprop/></d:propfind>`, false},
		{"local name starting with a digit", `<d:propfind xmlns:d="DAV:" xmlns:c="urn:c"><d:prop><c:0/></d:prop></d:propfind>`, false},
		{"declared prefix starting with a digit", `<d:propfind xmlns:d="DAV:" xmlns:0="urn:c"><d:allprop/></d:propfind>`, false},
		{"colon without prefix", `<d:propfind xmlns:d="DAV:"><d:prop><a:/></d:prop></d:propfind>`, false},
		{"doctype", `<!DOCTYPE d:propfind>` + pf, false},
		{"processing instruction", `<?php x?>` + pf, false},
		{"empty", "", false},
		{"no element", "<!-- only -->", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkXML([]byte(tc.body))
			if ok := err == nil; ok != tc.ok {
				t.Fatalf("checkXML(%q) = %v, want ok=%v", tc.body, err, tc.ok)
			}
		})
	}
}

// TestMalformedNameNotEchoed is the request FuzzXMLBody found answered
// with "<0 xmlns="urn:c"/>" in a 207, a response no XML parser reads.
func TestMalformedNameNotEchoed(t *testing.T) {
	e := newEnv(t)
	resp := e.do("alice", "PROPFIND", "/dav/calendars/alice/personal/",
		`<d:propfind xmlns:d="DAV:" xmlns:c="urn:c"><d:prop><c:0/></d:prop></d:propfind>`, "Depth", "0", ct, xmlType)
	wantStatus(t, resp, http.StatusBadRequest)
}

// TestBlankBody: only XML's white space makes an empty body (PROPFIND
// then means allprop); a body of U+00A0, which FuzzXMLBody found
// answered as if it were empty, is not XML.
func TestBlankBody(t *testing.T) {
	e := newEnv(t)
	base := "/dav/calendars/alice/personal/"
	decodeMS(t, e.do("alice", "PROPFIND", base, " \r\n\t", "Depth", "0", ct, xmlType))
	for _, body := range []string{"\u00a0", "\u0085", "\u2028", "\xef\xbb\xbf"} {
		wantStatus(t, e.do("alice", "PROPFIND", base, body, "Depth", "0", ct, xmlType), http.StatusBadRequest)
	}
}

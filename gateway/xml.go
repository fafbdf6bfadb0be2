package gateway

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"
)

// XML namespaces.
const (
	nsDAV     = "DAV:"
	nsCalDAV  = "urn:ietf:params:xml:ns:caldav" // RFC 4791
	nsCS      = "http://calendarserver.org/ns/" // getctag
	nsApple   = "http://apple.com/ns/ical/"     // calendar-color, calendar-order
	nsCalgate = "urn:calgate:xml"               // calgate's error messages
)

var prefixes = map[string]string{nsDAV: "d", nsCalDAV: "c", nsCS: "cs", nsApple: "ic"}

const msHeader = `<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:ic="http://apple.com/ns/ical/">`

func dav(local string) xml.Name    { return xml.Name{Space: nsDAV, Local: local} }
func caldav(local string) xml.Name { return xml.Name{Space: nsCalDAV, Local: local} }

// openTag renders the start tag of n, declaring its namespace inline when
// it is not one of the prefixes of the multistatus root.
func openTag(n xml.Name) string {
	if p, ok := prefixes[n.Space]; ok {
		return "<" + p + ":" + n.Local + ">"
	}
	if n.Space == "" {
		return "<" + n.Local + ` xmlns="">`
	}
	return "<" + n.Local + ` xmlns="` + escape(n.Space) + `">`
}

func closeTag(n xml.Name) string {
	if p, ok := prefixes[n.Space]; ok {
		return "</" + p + ":" + n.Local + ">"
	}
	return "</" + n.Local + ">"
}

func emptyTag(n xml.Name) string {
	s := openTag(n)
	return s[:len(s)-1] + "/>"
}

// escape returns s as XML character data (see appendEscaped); s itself
// when nothing in it needs escaping, which is the common case.
func escape(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= utf8.RuneSelf || xmlEscapes[c] != "" || c < ' ' && c != '\t' && c != '\n' {
			return string(appendEscaped(make([]byte, 0, len(s)+16), s))
		}
	}
	return s
}

// xmlEscapes are the replacements of the ASCII bytes that character data
// cannot hold as they are. CR is written as a reference so that CRLF
// line ends survive the XML parser's line-end normalisation (calendar
// data needs them); LF and tab are kept as they are.
var xmlEscapes = [utf8.RuneSelf]string{
	'&': "&amp;", '<': "&lt;", '>': "&gt;", '"': "&#34;", '\'': "&#39;", '\r': "&#13;",
}

// appendEscaped appends s to b as XML character data: markup characters
// and CR as references, and anything XML 1.0 cannot carry at all (other
// control characters, invalid UTF-8, U+FFFE and U+FFFF) as U+FFFD, so
// that the document stays well-formed whatever a stored object holds.
func appendEscaped[T string | []byte](b []byte, s T) []byte {
	b = slices.Grow(b, len(s)+len(s)/32)
	last := 0
	for i := 0; i < len(s); {
		// Plain bytes, the bulk of any text, are skipped in a tight loop.
		for i < len(s) && plainXML[s[i]] {
			i++
		}
		if i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			rep := xmlEscapes[c]
			if rep == "" {
				rep = "\uFFFD" // a control character XML cannot carry
			}
			b = append(b, s[last:i]...)
			b = append(b, rep...)
			i++
			last = i
			continue
		}
		r, n := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
			b = append(b, s[last:i]...)
			b = append(b, "\uFFFD"...)
			last = i + n
		}
		i += n
	}
	return append(b, s[last:]...)
}

// plainXML marks the bytes character data carries as they are: printable
// ASCII other than markup, tab and LF. Everything else goes through the
// slow path of appendEscaped (references, U+FFFD, UTF-8 checks).
var plainXML = func() (t [256]bool) {
	for c := range utf8.RuneSelf {
		t[c] = (c >= ' ' || c == '\t' || c == '\n') && xmlEscapes[c] == ""
	}
	return t
}()

// Limits on request XML, checked before it is decoded. No DAV or CalDAV
// request needs more than a handful of short attributes on an element.
const (
	maxXMLDepth   = 64
	maxXMLAttrs   = 256      // attributes on one element, namespace declarations included
	maxXMLAttrLen = 64 << 10 // bytes of one attribute value
)

var (
	errXMLDoctype = errors.New("DOCTYPE and entity declarations are not accepted")
	errXMLDepth   = errors.New("XML nested too deeply")
)

// utf8BOM may start a UTF-8 document (XML 1.0 Appendix F).
const utf8BOM = "\xef\xbb\xbf"

// checkXML scans body once before it is unmarshalled: it refuses DOCTYPE
// (and so entity declarations, billion laughs and external entities),
// processing instructions other than the XML declaration, deep nesting,
// and elements with too many or too long attributes.
// It also refuses what xml.Unmarshal, which stops at the end of the first
// element, lets through although the document is not well-formed: a
// second root element or text after it, an XML declaration that is not
// at the start, a repeated attribute, and a namespace prefix that is not
// declared (which the decoder would take for a namespace name).
func checkXML(body []byte) error {
	start := 0
	if bytes.HasPrefix(body, []byte(utf8BOM)) {
		start = len(utf8BOM)
	}
	d := xml.NewDecoder(bytes.NewReader(body[start:]))
	d.Strict = true
	// open holds the elements not yet closed; scope[i] are the prefixes
	// declared in open[i] and its ancestors.
	var open []xml.Name
	scope := []map[string]bool{{"xml": true}}
	roots := 0
	names := make(qnames)
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			if len(open) != 0 || roots == 0 {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.Directive:
			return errXMLDoctype
		case xml.ProcInst:
			if !strings.EqualFold(t.Target, "xml") {
				return errors.New("processing instructions are not accepted")
			}
			if off != 0 {
				return errors.New("the XML declaration must come first")
			}
		case xml.CharData:
			if len(open) == 0 && len(bytes.Trim(t, " \t\r\n")) != 0 {
				return errors.New("text outside the root element")
			}
		case xml.StartElement:
			if len(open) == 0 {
				if roots++; roots > 1 {
					return errors.New("more than one root element")
				}
			}
			if len(open) >= maxXMLDepth {
				return errXMLDepth
			}
			if !names.qualified(t.Name) {
				return fmt.Errorf("<%s> is not a qualified name", rawName(t.Name))
			}
			if len(t.Attr) > maxXMLAttrs {
				return fmt.Errorf("<%s> has more than %d attributes", rawName(t.Name), maxXMLAttrs)
			}
			bound, cloned := scope[len(scope)-1], false
			seen := make(map[xml.Name]bool, len(t.Attr))
			for _, a := range t.Attr {
				if len(a.Value) > maxXMLAttrLen {
					return fmt.Errorf("attribute %s is longer than %d bytes", rawName(a.Name), maxXMLAttrLen)
				}
				if !names.qualified(a.Name) {
					return fmt.Errorf("attribute %s is not a qualified name", rawName(a.Name))
				}
				if seen[a.Name] {
					return fmt.Errorf("attribute %s repeated", rawName(a.Name))
				}
				seen[a.Name] = true
				if a.Name.Space == "xmlns" {
					if a.Value == "" || a.Name.Local == "xmlns" {
						return fmt.Errorf("%s=%q is not a namespace declaration", rawName(a.Name), a.Value)
					}
					if !cloned {
						bound, cloned = maps.Clone(bound), true
					}
					bound[a.Name.Local] = true
				}
			}
			if p := t.Name.Space; p != "" && !bound[p] {
				return fmt.Errorf("namespace prefix of <%s> is not declared", rawName(t.Name))
			}
			for _, a := range t.Attr {
				if p := a.Name.Space; p != "" && p != "xmlns" && !bound[p] {
					return fmt.Errorf("namespace prefix of attribute %s is not declared", rawName(a.Name))
				}
			}
			open = append(open, t.Name)
			scope = append(scope, bound)
		case xml.EndElement:
			if len(open) == 0 || open[len(open)-1] != t.Name {
				return fmt.Errorf("unexpected </%s>", rawName(t.Name))
			}
			open = open[:len(open)-1]
			scope = scope[:len(scope)-1]
		}
	}
}

// qnames remembers which names qualified found to be qualified names.
type qnames map[xml.Name]bool

// qualified reports whether n, as the decoder split it at its colon, is a
// qualified name (Namespaces in XML §4): a prefixed local part must be a
// name on its own (the decoder only checked prefix:local as a whole, so
// "c:0" passes it), and an unprefixed one holds no colon (":a", "a:").
// Names taken from a request are written back in responses, where "<0"
// would break the document.
func (q qnames) qualified(n xml.Name) bool {
	if n.Space == "" {
		return !strings.Contains(n.Local, ":")
	}
	ok, seen := q[n]
	if !seen {
		tok, err := xml.NewDecoder(strings.NewReader("<" + n.Local + "/>")).RawToken()
		se, isStart := tok.(xml.StartElement)
		ok = err == nil && isStart && se.Name == xml.Name{Local: n.Local}
		q[n] = ok
	}
	return ok
}

// rawName spells a name as written: prefix:local.
func rawName(n xml.Name) string {
	if n.Space == "" {
		return n.Local
	}
	return n.Space + ":" + n.Local
}

// readXML reads and decodes an XML request body into v. An empty body
// (nothing but white space) leaves v untouched and reports false.
func (h *Handler) readXML(w http.ResponseWriter, r *http.Request, v any) (bool, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		// curl -d sends application/x-www-form-urlencoded; accept it as
		// most DAV servers do, and refuse types that are clearly not XML.
		if mt != "application/xml" && mt != "text/xml" && mt != "application/x-www-form-urlencoded" {
			return false, errf(http.StatusUnsupportedMediaType, "request body must be application/xml, not %q", mt)
		}
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return false, err
	}
	// Only XML's white space makes a body empty: bytes.TrimSpace would
	// also take U+00A0 and U+0085 for it.
	if len(bytes.Trim(body, " \t\r\n")) == 0 {
		return false, nil
	}
	if err := checkXML(body); err != nil {
		return false, errf(http.StatusBadRequest, "malformed XML request body: %v", err)
	}
	if err := xml.Unmarshal(body, v); err != nil {
		return false, errf(http.StatusBadRequest, "malformed XML request body: %v", err)
	}
	return true, nil
}

// readBody reads the whole request body, refusing one larger than the
// configured maximum before reading it (413 with CALDAV:max-resource-size).
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	tooBig := &davError{status: http.StatusRequestEntityTooLarge, cond: caldav("max-resource-size"),
		msg: "request body exceeds the maximum resource size"}
	if r.ContentLength > h.maxSize {
		return nil, tooBig
	}
	body, err := io.ReadAll(http.MaxBytesReader(serverWriter(w), r.Body, h.maxSize))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooBig
		}
		return nil, errf(http.StatusBadRequest, "reading request body: %v", err)
	}
	return body, nil
}

// serverWriter unwraps w down to the server's own ResponseWriter. Only
// that one learns from http.MaxBytesReader that the limit was hit, and
// then closes the connection after the answer; through a wrapper (such
// as statusWriter) the server would first try to read up to 256 KiB more
// of the refused body, and a chunked body that stops there held the 413
// back until the client gave up.
func serverWriter(w http.ResponseWriter) http.ResponseWriter {
	for {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}

// nameList decodes the children of an element as a list of names
// (the content of DAV:prop in PROPFIND, for example).
type nameList []xml.Name

func (l *nameList) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return eachChild(d, func(t xml.StartElement) error {
		*l = append(*l, t.Name)
		return d.Skip()
	})
}

// eachChild calls fn for each child element of the element whose start
// was just read, up to its end. fn must consume the child (d.Skip or
// DecodeElement).
func eachChild(d *xml.Decoder, fn func(xml.StartElement) error) error {
	for {
		tok, err := d.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

// rawProp is one property element with its content, kept as a
// self-contained XML fragment (used for PROPPATCH and dead properties).
type rawProp struct {
	Name  xml.Name
	XML   string // the whole element, re-encoded with its namespaces
	Inner []byte // the element's content as character data and children
	start xml.StartElement
}

// propList decodes the children of a DAV:prop element in full.
type propList []rawProp

func (l *propList) UnmarshalXML(d *xml.Decoder, start xml.StartElement) error {
	return eachChild(d, func(t xml.StartElement) error {
		p, err := captureElement(d, t)
		*l = append(*l, p)
		return err
	})
}

// captureElement re-encodes the element that starts with start (whose
// start token was already read) into a self-contained fragment.
func captureElement(d *xml.Decoder, start xml.StartElement) (rawProp, error) {
	var whole, inner bytes.Buffer
	we := xml.NewEncoder(&whole)
	ie := xml.NewEncoder(&inner)
	if err := we.EncodeToken(cleanToken(start.Copy())); err != nil {
		return rawProp{}, err
	}
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			return rawProp{}, err
		}
		tok = cleanToken(xml.CopyToken(tok))
		if err := we.EncodeToken(tok); err != nil {
			return rawProp{}, err
		}
		switch tok.(type) {
		case xml.StartElement:
			depth++
		case xml.EndElement:
			if depth == 0 {
				if err := we.Flush(); err != nil {
					return rawProp{}, err
				}
				if err := ie.Flush(); err != nil {
					return rawProp{}, err
				}
				return rawProp{Name: start.Name, XML: whole.String(), Inner: inner.Bytes(), start: start}, nil
			}
			depth--
		}
		if err := ie.EncodeToken(tok); err != nil {
			return rawProp{}, err
		}
	}
}

// innerText returns the character data of a captured element.
func (p rawProp) innerText() string {
	var b strings.Builder
	d := xml.NewDecoder(bytes.NewReader(append(append([]byte("<x>"), p.Inner...), "</x>"...)))
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		if cd, ok := tok.(xml.CharData); ok {
			b.Write(cd)
		}
	}
	return b.String()
}

// childNames lists the names of a captured element's child elements.
func (p rawProp) childNames() []xml.Name {
	var out []xml.Name
	d := xml.NewDecoder(bytes.NewReader(append(append([]byte("<x>"), p.Inner...), "</x>"...)))
	depth := 0
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 2 {
				out = append(out, t.Name)
			}
		case xml.EndElement:
			depth--
		}
	}
	return out
}

// cleanToken drops namespace declarations from a start element: the
// encoder declares the namespaces it needs itself, and a copied
// declaration would be written twice.
func cleanToken(tok xml.Token) xml.Token {
	se, ok := tok.(xml.StartElement)
	if !ok {
		return tok
	}
	attrs := se.Attr[:0:0]
	for _, a := range se.Attr {
		if a.Name.Space == "xmlns" || (a.Name.Space == "" && a.Name.Local == "xmlns") {
			continue
		}
		attrs = append(attrs, a)
	}
	se.Attr = attrs
	return se
}

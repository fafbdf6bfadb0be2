package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The name spaces the tool reads (RFC 4918, RFC 4791), and the one of the
// reserved prefix xml.
const (
	nsDAV    = "DAV:"
	nsCalDAV = "urn:ietf:params:xml:ns:caldav"
	nsXML    = "http://www.w3.org/XML/1998/namespace"

	// nsNone stands for the name space of a name that matches no field:
	// one with an undeclared prefix or the prefix xmlns. encoding/xml
	// keeps the prefix there; a prefix holds no colon, so it can never be
	// DAV: or the CalDAV name space, and neither can nsNone.
	nsNone = "\x00"
)

// errNonASCIIName is returned by fastMultistatus for a name with a byte
// outside ASCII: whether it is an XML name depends on the tables of XML 1.0
// Appendix B, which decodeMultistatus leaves to encoding/xml. No CalDAV
// server sends such names.
var errNonASCIIName = errors.New("non-ASCII name")

// decodeMultistatus decodes a DAV:multistatus body into the types of
// dav.go, with the result of xml.Unmarshal(data, &ms): the same values, and
// an error wherever xml.Unmarshal fails. It is fastMultistatus, or
// xml.Unmarshal itself for the rare body that fastMultistatus leaves to it.
func decodeMultistatus(data []byte) (*multistatus, error) {
	ms, err := fastMultistatus(data)
	if err == errNonASCIIName {
		ms = new(multistatus)
		if err := xml.Unmarshal(data, ms); err != nil {
			return nil, err
		}
		return ms, nil
	}
	return ms, err
}

// fastMultistatus decodes data as xml.Unmarshal into a multistatus does,
// about ten times faster: the tool checks every answer of the server it
// measures on the same machine, so its decoder must not be what bounds a
// figure. It reproduces encoding/xml's reading, quirks included: what
// precedes the root element is checked and skipped (text too), what
// follows it is not read; the root must be DAV:multistatus; a string field
// gets the element's own character data, without that of its children; a
// later element of a non-slice field overwrites or extends the earlier one;
// unknown elements are skipped but must be well-formed; line ends in
// character data become LF (a &#13; reference stays CR); the five
// predefined entities and character references are known, DOCTYPE
// declares nothing; characters must be valid UTF-8 in the XML range
// (comments, processing instructions and directives are not checked); an
// <?xml?> declaration must say version 1.0 and UTF-8 if it says anything.
// It returns errNonASCIIName, after checking everything before it, when it
// meets a name with a byte outside ASCII.
func fastMultistatus(data []byte) (*multistatus, error) {
	d := &msDecoder{data: data}
	d.text.src, d.attr.src = data, data
	for {
		// The first start element is the root; next fails on an end
		// element before it, and at the end of data.
		start, err := d.next(false)
		if err != nil {
			return nil, err
		}
		if start {
			break
		}
	}
	if string(d.local) != "multistatus" {
		return nil, fmt.Errorf("expected element type <multistatus> but have <%s>", d.local)
	}
	if d.space != nsDAV {
		have := d.space
		switch have {
		case "":
			have = "no name space"
		case nsNone:
			have = "an undeclared prefix"
		}
		return nil, fmt.Errorf("expected element <multistatus> in name space DAV: but have %s", have)
	}
	ms := &multistatus{XMLName: xml.Name{Space: nsDAV, Local: "multistatus"}}
	if err := d.multistatus(ms); err != nil {
		return nil, err
	}
	return ms, nil
}

// msDecoder reads one document, from data[pos:].
type msDecoder struct {
	data []byte
	pos  int

	// The element that next reported last: its name space after
	// translation and its local name (a slice of data).
	space string
	local []byte
	// closing is set when that element was empty (<a/>): the next token
	// is its end.
	closing bool

	open []openElem  // the elements started and not ended, innermost last
	ns   []nsBinding // the name space declarations in scope, innermost last

	text collector // the character data of the string field being read
	attr collector // the value of an xmlns attribute
}

// openElem is a started element: its name as written (prefix:local), and
// len(msDecoder.ns) before its declarations.
type openElem struct {
	name   []byte
	nsMark int
}

// nsBinding is one xmlns or xmlns:prefix attribute in scope.
type nsBinding struct {
	prefix string // "" for the default name space
	url    string
}

// collector gathers decoded character data. While the data is one piece of
// the document, it is kept as bounds into src and copied once, by string.
type collector struct {
	src     []byte
	lo, hi  int    // the data is src[lo:hi], while !spilled
	buf     []byte // the data, once spilled
	spilled bool
}

func (c *collector) reset() {
	c.lo, c.hi, c.spilled, c.buf = 0, 0, false, c.buf[:0]
}

// raw adds src[lo:hi].
func (c *collector) raw(lo, hi int) {
	if lo == hi {
		return
	}
	if !c.spilled {
		if c.lo == c.hi {
			c.lo, c.hi = lo, hi
			return
		}
		c.spill()
	}
	c.buf = append(c.buf, c.src[lo:hi]...)
}

// char adds the UTF-8 encoding of r.
func (c *collector) char(r rune) {
	if !c.spilled {
		c.spill()
	}
	c.buf = utf8.AppendRune(c.buf, r)
}

func (c *collector) spill() {
	c.buf = append(c.buf[:0], c.src[c.lo:c.hi]...)
	c.spilled = true
}

func (c *collector) string() string {
	if c.spilled {
		return string(c.buf)
	}
	return string(c.src[c.lo:c.hi])
}

// is tells whether the element that next reported last is space local.
func (d *msDecoder) is(space, local string) bool {
	return string(d.local) == local && d.space == space
}

func (d *msDecoder) multistatus(ms *multistatus) error {
	for {
		start, err := d.next(false)
		if err != nil || !start {
			return err
		}
		switch {
		case d.is(nsDAV, "response"):
			ms.Responses = append(ms.Responses, response{})
			err = d.response(&ms.Responses[len(ms.Responses)-1])
		case d.is(nsDAV, "sync-token"):
			ms.SyncToken, err = d.textContent()
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

func (d *msDecoder) response(r *response) error {
	for {
		start, err := d.next(false)
		if err != nil || !start {
			return err
		}
		switch {
		case d.is(nsDAV, "href"):
			var s string
			s, err = d.textContent()
			r.Hrefs = append(r.Hrefs, s)
		case d.is(nsDAV, "status"):
			r.Status, err = d.textContent()
		case d.is(nsDAV, "propstat"):
			r.Propstats = append(r.Propstats, propstat{})
			err = d.propstat(&r.Propstats[len(r.Propstats)-1])
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

func (d *msDecoder) propstat(ps *propstat) error {
	for {
		start, err := d.next(false)
		if err != nil || !start {
			return err
		}
		switch {
		case d.is(nsDAV, "status"):
			ps.Status, err = d.textContent()
		case d.is(nsDAV, "prop"):
			// A second DAV:prop adds to the first, as with encoding/xml.
			err = d.prop(&ps.Prop)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

func (d *msDecoder) prop(p *prop) error {
	for {
		start, err := d.next(false)
		if err != nil || !start {
			return err
		}
		switch {
		case d.is(nsDAV, "getetag"):
			err = d.stringPtr(&p.ETag)
		case d.is(nsDAV, "sync-token"):
			err = d.stringPtr(&p.SyncToken)
		case d.is(nsCalDAV, "calendar-data"):
			err = d.stringPtr(&p.CalendarData)
		case d.is(nsDAV, "resourcetype"):
			if p.ResourceType == nil {
				p.ResourceType = &struct{}{}
			}
			err = d.skip()
		case d.is(nsDAV, "current-user-principal"):
			err = d.hrefProp(&p.CurrentUserPrincipal)
		case d.is(nsCalDAV, "calendar-home-set"):
			err = d.hrefProp(&p.CalendarHomeSet)
		default:
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// stringPtr reads the text of a *string field, present even when empty.
func (d *msDecoder) stringPtr(p **string) error {
	if *p == nil {
		*p = new(string)
	}
	var err error
	**p, err = d.textContent()
	return err
}

func (d *msDecoder) hrefProp(p **hrefProp) error {
	if *p == nil {
		*p = new(hrefProp)
	}
	hp := *p
	for {
		start, err := d.next(false)
		if err != nil || !start {
			return err
		}
		if d.is(nsDAV, "href") {
			var s string
			s, err = d.textContent()
			hp.Hrefs = append(hp.Hrefs, s)
		} else {
			err = d.skip()
		}
		if err != nil {
			return err
		}
	}
}

// textContent reads up to the end of the current element and returns its
// own character data; child elements are checked and skipped.
func (d *msDecoder) textContent() (string, error) {
	d.text.reset()
	for {
		start, err := d.next(true)
		if err != nil {
			return "", err
		}
		if !start {
			return d.text.string(), nil
		}
		if err := d.skip(); err != nil {
			return "", err
		}
	}
}

// skip reads up to the end of the current element.
func (d *msDecoder) skip() error {
	depth := 0
	for {
		start, err := d.next(false)
		if err != nil {
			return err
		}
		if start {
			depth++
		} else if depth == 0 {
			return nil
		} else {
			depth--
		}
	}
}

// next reads up to the next start or end element and tells which it was;
// for a start element, d.space and d.local name it. It checks and passes
// over character data (collected into d.text when collect is set),
// comments, processing instructions and directives. The end of data is
// an error: next is not called after the root element has ended.
func (d *msDecoder) next(collect bool) (start bool, err error) {
	if d.closing {
		d.closing = false
		d.popElement()
		return false, nil
	}
	var c *collector
	if collect {
		c = &d.text
	}
	data := d.data
	for {
		i := d.pos
		if i >= len(data) {
			return false, d.syntaxError(i, "unexpected EOF")
		}
		if data[i] != '<' {
			if d.pos, err = d.chars(i, 0, c); err != nil {
				return false, err
			}
			continue
		}
		if i+1 >= len(data) {
			return false, d.syntaxError(i, "unexpected EOF")
		}
		switch data[i+1] {
		case '/':
			return false, d.endElement()
		case '?':
			err = d.procInst()
		case '!':
			err = d.bang(c)
		default:
			return true, d.startElement()
		}
		if err != nil {
			return false, err
		}
	}
}

// syntaxError reports a fault at byte offset at.
func (d *msDecoder) syntaxError(at int, msg string) error {
	return fmt.Errorf("XML syntax error at byte %d: %s", at, msg)
}

// startElement reads the start tag at d.pos.
func (d *msDecoder) startElement() error {
	data := d.data
	lo := d.pos + 1
	i, err := d.name(lo)
	if err != nil {
		return err
	}
	name := data[lo:i]
	prefix, local, ok := splitName(name)
	if !ok {
		return d.syntaxError(lo, "expected element name after <")
	}
	mark := len(d.ns)
	for {
		i = skipSpace(data, i)
		if i >= len(data) {
			return d.syntaxError(i, "unexpected EOF")
		}
		if b := data[i]; b == '>' {
			i++
			break
		} else if b == '/' {
			if i+1 >= len(data) || data[i+1] != '>' {
				return d.syntaxError(i, "expected /> in element")
			}
			i += 2
			d.closing = true
			break
		}
		alo := i
		if i, err = d.name(i); err != nil {
			return err
		}
		aprefix, alocal, ok := splitName(data[alo:i])
		if !ok {
			return d.syntaxError(alo, "expected attribute name in element")
		}
		i = skipSpace(data, i)
		if i >= len(data) || data[i] != '=' {
			return d.syntaxError(i, "attribute name without = in element")
		}
		i = skipSpace(data, i+1)
		if i >= len(data) || data[i] != '"' && data[i] != '\'' {
			return d.syntaxError(i, "unquoted or missing attribute value in element")
		}
		// xmlns="url" sets the default name space, xmlns:p="url" the
		// prefix p, for this element and its content.
		isDefault := len(aprefix) == 0 && string(alocal) == "xmlns"
		if !isDefault && string(aprefix) != "xmlns" {
			if i, err = d.chars(i+1, data[i], nil); err != nil {
				return err
			}
			continue
		}
		d.attr.reset()
		if i, err = d.chars(i+1, data[i], &d.attr); err != nil {
			return err
		}
		b := nsBinding{url: d.attr.string()}
		if !isDefault {
			b.prefix = string(alocal)
		}
		d.ns = append(d.ns, b)
	}
	d.pos = i
	d.open = append(d.open, openElem{name: name, nsMark: mark})
	d.local = local
	d.space = d.translate(prefix, local)
	return nil
}

// translate returns the name space of an element name, as encoding/xml
// does: the prefix xml is the XML name space, the prefix xmlns and
// undeclared prefixes match nothing, an unprefixed name is in the default
// name space if one is declared (except an element named xmlns).
func (d *msDecoder) translate(prefix, local []byte) string {
	switch {
	case string(prefix) == "xmlns":
		return nsNone
	case string(prefix) == "xml":
		return nsXML
	case len(prefix) == 0 && string(local) == "xmlns":
		return ""
	}
	for k := len(d.ns) - 1; k >= 0; k-- {
		if d.ns[k].prefix == string(prefix) {
			return d.ns[k].url
		}
	}
	if len(prefix) == 0 {
		return ""
	}
	return nsNone
}

// endElement reads the end tag at d.pos, which must close the innermost
// open element with the same name as written.
func (d *msDecoder) endElement() error {
	data := d.data
	lo := d.pos + 2
	i, err := d.name(lo)
	if err != nil {
		return err
	}
	name := data[lo:i]
	if _, _, ok := splitName(name); !ok {
		return d.syntaxError(lo, "expected element name after </")
	}
	i = skipSpace(data, i)
	if i >= len(data) || data[i] != '>' {
		return d.syntaxError(i, "invalid characters between </"+string(name)+" and >")
	}
	if len(d.open) == 0 {
		return d.syntaxError(lo, "unexpected end element </"+string(name)+">")
	}
	if top := d.open[len(d.open)-1].name; !bytes.Equal(top, name) {
		return d.syntaxError(lo, "element <"+string(top)+"> closed by </"+string(name)+">")
	}
	d.pos = i + 1
	d.popElement()
	return nil
}

func (d *msDecoder) popElement() {
	e := d.open[len(d.open)-1]
	d.open = d.open[:len(d.open)-1]
	clear(d.ns[e.nsMark:]) // let the strings go
	d.ns = d.ns[:e.nsMark]
}

// name reads a name at data[i:] and returns where it ends. Names are
// [A-Za-z_:][A-Za-z0-9_:.-]* in ASCII; a byte outside ASCII gives
// errNonASCIIName.
func (d *msDecoder) name(i int) (int, error) {
	data := d.data
	lo := i
	for i < len(data) && nameByte[data[i]] {
		i++
	}
	if i < len(data) && data[i] >= utf8.RuneSelf {
		return i, errNonASCIIName
	}
	if i == lo {
		if i >= len(data) {
			return i, d.syntaxError(i, "unexpected EOF")
		}
		return i, d.syntaxError(i, "expected a name")
	}
	if b := data[lo]; b >= '0' && b <= '9' || b == '.' || b == '-' {
		return i, d.syntaxError(lo, "invalid XML name: "+string(data[lo:i]))
	}
	return i, nil
}

// splitName splits a name as written into prefix and local name at its
// colon, when both sides are non-empty. ok is false for two colons or more.
func splitName(name []byte) (prefix, local []byte, ok bool) {
	k := bytes.IndexByte(name, ':')
	if k < 0 {
		return nil, name, true
	}
	if bytes.IndexByte(name[k+1:], ':') >= 0 {
		return nil, nil, false
	}
	if k == 0 || k == len(name)-1 {
		return nil, name, true
	}
	return name[:k], name[k+1:], true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\r', '\n', '\t':
			i++
		default:
			return i
		}
	}
	return i
}

// chars reads character data at data[i:]: with quote 0, text up to the next
// '<' or the end of data (where the caller fails); with quote a quotation
// mark or an apostrophe, an attribute value up to that quote, which it consumes. It replaces
// entity and character references, turns CR LF and lone CR into LF, checks
// the characters and, when c is not nil, collects the result. It returns
// the offset after the data.
func (d *msDecoder) chars(i int, quote byte, c *collector) (int, error) {
	data := d.data
	stop := &textStop
	if quote != 0 {
		stop = &attrStop
	}
	run := i // start of the plain run not yet collected
	for {
		for i < len(data) && !stop[data[i]] {
			i++
		}
		if i >= len(data) {
			if quote != 0 {
				return i, d.syntaxError(i, "unexpected EOF")
			}
			if c != nil {
				c.raw(run, i)
			}
			return i, nil
		}
		switch b := data[i]; {
		case b == '<':
			if quote != 0 {
				return i, d.syntaxError(i, "unescaped < inside quoted string")
			}
			if c != nil {
				c.raw(run, i)
			}
			return i, nil
		case b == quote && quote != 0:
			if c != nil {
				c.raw(run, i)
			}
			return i + 1, nil
		case b == '"' || b == '\'':
			i++
		case b == '&':
			r, n, legal := reference(data[i:])
			if n == 0 {
				return i, d.syntaxError(i, "invalid character entity")
			}
			if !legal {
				return i, d.syntaxError(i, fmt.Sprintf("illegal character code %U", r))
			}
			if c != nil {
				c.raw(run, i)
				c.char(r)
			}
			i += n
			run = i
		case b == '\r':
			if c != nil {
				c.raw(run, i)
				c.char('\n')
			}
			i++
			if i < len(data) && data[i] == '\n' {
				i++
			}
			run = i
		case b == ']':
			if quote == 0 && bytes.HasPrefix(data[i:], []byte("]]>")) {
				return i, d.syntaxError(i, "unescaped ]]> not in CDATA section")
			}
			i++
		default:
			n, err := d.char(i, len(data))
			if err != nil {
				return i, err
			}
			i += n
		}
	}
}

// char checks the character at data[i:end] that is not plain ASCII text (a
// control or a multi-byte sequence) and returns its length.
func (d *msDecoder) char(i, end int) (int, error) {
	if b := d.data[i]; b < utf8.RuneSelf {
		return 0, d.syntaxError(i, fmt.Sprintf("illegal character code %U", rune(b)))
	}
	r, n := utf8.DecodeRune(d.data[i:end])
	if r == utf8.RuneError && n == 1 {
		return 0, d.syntaxError(i, "invalid UTF-8")
	}
	if !inCharRange(r) {
		return 0, d.syntaxError(i, fmt.Sprintf("illegal character code %U", r))
	}
	return n, nil
}

// reference decodes the reference at the start of b, which is '&': one of
// the five predefined entities, &#decimal; or &#xhex;. It returns the
// character and the length of the reference, n 0 if it is not one, and
// whether the character is in the XML character range. A reference to a
// surrogate gives U+FFFD, as encoding/xml's string(rune(n)) does.
func reference(b []byte) (r rune, n int, legal bool) {
	if len(b) < 2 || b[1] != '#' {
		for _, e := range predefined {
			if len(b) > len(e.name) && string(b[1:1+len(e.name)]) == e.name {
				return e.r, 1 + len(e.name), true
			}
		}
		return 0, 0, false
	}
	i, hex := 2, false
	if i < len(b) && b[i] == 'x' {
		i, hex = 3, true
	}
	lo := i
	var v rune
	for ; i < len(b); i++ {
		c := b[i]
		var digit rune
		switch {
		case '0' <= c && c <= '9':
			digit = rune(c - '0')
		case hex && 'a' <= c && c <= 'f':
			digit = rune(c-'a') + 10
		case hex && 'A' <= c && c <= 'F':
			digit = rune(c-'A') + 10
		default:
			goto end
		}
		// Past the Unicode range the reference is invalid however it
		// goes on; stop counting there so that v cannot overflow.
		if v <= utf8.MaxRune {
			if hex {
				v = v*16 + digit
			} else {
				v = v*10 + digit
			}
		}
	}
end:
	if i == lo || i >= len(b) || b[i] != ';' || v > utf8.MaxRune {
		return 0, 0, false
	}
	if 0xD800 <= v && v <= 0xDFFF {
		v = utf8.RuneError
	}
	return v, i + 1, inCharRange(v)
}

// predefined are the entities of XML 1.0 section 4.6, each with its ';'.
var predefined = [...]struct {
	name string
	r    rune
}{{"lt;", '<'}, {"gt;", '>'}, {"amp;", '&'}, {"apos;", '\''}, {"quot;", '"'}}

// inCharRange tells whether r is a Char of XML 1.0 section 2.2.
func inCharRange(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}

// procInst reads the processing instruction at d.pos. The target xml is
// the XML declaration: a version other than 1.0 or an encoding other than
// UTF-8 is an error, wherever it appears.
func (d *msDecoder) procInst() error {
	data := d.data
	lo := d.pos + 2
	i, err := d.name(lo)
	if err != nil {
		return err
	}
	k := bytes.Index(data[i:], []byte("?>"))
	if k < 0 {
		return d.syntaxError(len(data), "unexpected EOF")
	}
	if string(data[lo:i]) == "xml" {
		content := string(data[i : i+k])
		if v := procInstParam("version", content); v != "" && v != "1.0" {
			return fmt.Errorf("xml: unsupported version %q; only version 1.0 is supported", v)
		}
		if enc := procInstParam("encoding", content); enc != "" && !strings.EqualFold(enc, "utf-8") {
			return fmt.Errorf("xml: encoding %q declared, only UTF-8 is read", enc)
		}
	}
	d.pos = i + k + 2
	return nil
}

// procInstParam returns the value of param="value" (or 'value') in the
// content of a processing instruction, read as encoding/xml reads it: the
// first param= followed by a quote, up to the next same quote.
func procInstParam(param, s string) string {
	param += "="
	i := 0
	var sep byte
	for i < len(s) {
		sub := s[i:]
		k := strings.Index(sub, param)
		if k < 0 || len(param)+k >= len(sub) {
			return ""
		}
		i += len(param) + k + 1
		if c := sub[len(param)+k]; c == '\'' || c == '"' {
			sep = c
			break
		}
	}
	if sep == 0 {
		return ""
	}
	j := strings.IndexByte(s[i:], sep)
	if j < 0 {
		return ""
	}
	return s[i : i+j]
}

// bang reads the markup at d.pos that starts with <!: a comment, a CDATA
// section (collected into c if not nil) or a directive.
func (d *msDecoder) bang(c *collector) error {
	data := d.data
	i := d.pos + 2
	if i >= len(data) {
		return d.syntaxError(i, "unexpected EOF")
	}
	switch data[i] {
	case '-':
		// A comment ends at its first "--", which must be followed by '>'.
		if i+1 >= len(data) {
			return d.syntaxError(i+1, "unexpected EOF")
		}
		if data[i+1] != '-' {
			return d.syntaxError(i, "invalid sequence <!- not part of <!--")
		}
		lo := i + 2
		k := bytes.Index(data[lo:], []byte("--"))
		if k < 0 || lo+k+2 >= len(data) {
			return d.syntaxError(len(data), "unexpected EOF")
		}
		if data[lo+k+2] != '>' {
			return d.syntaxError(lo+k, `invalid sequence "--" not allowed in comments`)
		}
		d.pos = lo + k + 3
		return nil
	case '[':
		const open = "[CDATA["
		rest := data[i:]
		if len(rest) > len(open) {
			rest = rest[:len(open)]
		}
		if !bytes.HasPrefix([]byte(open), rest) {
			return d.syntaxError(i, "invalid <![ sequence")
		}
		lo := i + len(open)
		if lo > len(data) {
			return d.syntaxError(len(data), "unexpected EOF")
		}
		k := bytes.Index(data[lo:], []byte("]]>"))
		if k < 0 {
			return d.syntaxError(len(data), "unexpected EOF in CDATA section")
		}
		if err := d.cdata(lo, lo+k, c); err != nil {
			return err
		}
		d.pos = lo + k + 3
		return nil
	}
	return d.directive(i)
}

// cdata checks the content data[lo:hi] of a CDATA section and, when c is
// not nil, collects it with line ends turned into LF.
func (d *msDecoder) cdata(lo, hi int, c *collector) error {
	data := d.data
	i, run := lo, lo
	for {
		for i < hi && !cdataStop[data[i]] {
			i++
		}
		if i >= hi {
			if c != nil {
				c.raw(run, hi)
			}
			return nil
		}
		if data[i] == '\r' {
			if c != nil {
				c.raw(run, i)
				c.char('\n')
			}
			i++
			if i < hi && data[i] == '\n' {
				i++
			}
			run = i
			continue
		}
		n, err := d.char(i, hi)
		if err != nil {
			return err
		}
		i += n
	}
}

// directive passes over a directive such as <!DOCTYPE ...>, whose first
// byte after "<!" is at data[i]. Like encoding/xml, it ends at the first
// '>' outside quotes, nested <...> and comments, and declares nothing; the
// byte at i is not looked at.
func (d *msDecoder) directive(i int) error {
	data := d.data
	var quote byte
	depth := 0
	for i++; ; {
		if i >= len(data) {
			return d.syntaxError(i, "unexpected EOF")
		}
		b := data[i]
		i++
		switch {
		case quote != 0:
			if b == quote {
				quote = 0
			}
		case b == '\'' || b == '"':
			quote = b
		case b == '>':
			if depth == 0 {
				d.pos = i
				return nil
			}
			depth--
		case b == '<':
			if !bytes.HasPrefix(data[i:], []byte("!--")) {
				depth++
				continue
			}
			k := bytes.Index(data[i+3:], []byte("-->"))
			if k < 0 {
				return d.syntaxError(len(data), "unexpected EOF")
			}
			i += 3 + k + 3
		}
	}
}

// Byte classes of the scanners. A stop table marks the bytes that end a
// run of plain data: controls other than tab and LF, CR, bytes outside
// ASCII, and the given markup bytes.
var (
	textStop  = stopTable("<&]")
	attrStop  = stopTable("<&\"'")
	cdataStop = stopTable("")
	nameByte  = nameTable()
)

func stopTable(markup string) (t [256]bool) {
	for b := range 256 {
		t[b] = b < 0x20 && b != '\t' && b != '\n' || b >= utf8.RuneSelf
	}
	for _, b := range []byte(markup) {
		t[b] = true
	}
	return t
}

// nameTable marks the ASCII bytes of names: letters, digits, "_:.-".
func nameTable() (t [256]bool) {
	for b := range 256 {
		c := byte(b)
		t[b] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '_' || c == ':' || c == '.' || c == '-'
	}
	return t
}

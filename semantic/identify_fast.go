package semantic

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"sync"

	fastjson "github.com/segmentio/encoding/json"
)

// identifyChatFast is IdentifyChat's one-pass path for the common shape
// of a chat request: a JSON object with a string model, every message an
// object with a non-empty string role and string or null content, the
// last one's content a string, and no object holding a key twice. It
// reads the body once with a tokenizer and writes the canonical JSON of
// the scope as it goes (sorting each object's members as appendCanonical
// does), without building map[string]any trees for the parts that are
// only hashed.
//
// It returns ok false, and nothing else, for any body outside that shape
// or any doubt (an error, a key given twice, content parts, a parameter
// of the wrong kind); IdentifyChat then takes the general path, which
// gives the same Identity for every body this path accepts
// (TestIdentifyFastMatchesGeneral, FuzzIdentifyFast) and owns every error
// message. It is safe for concurrent use.
func identifyChatFast(body []byte, who Caller, n Normalization) (id Identity, rq Request, ok bool) {
	if len(body) == 0 || checkUTF8(body) != nil {
		return id, rq, false
	}
	p := canonPool.Get().(*canonParser)
	defer p.release()
	p.tok.Reset(body)
	// A body without <, >, & and 0xe2 (the first byte of U+2028 and
	// U+2029) holds no string that appendJSONString would escape other
	// than its escaped ones.
	p.plain = bytes.IndexByte(body, '<') < 0 && bytes.IndexByte(body, '>') < 0 &&
		bytes.IndexByte(body, '&') < 0 && bytes.IndexByte(body, 0xe2) < 0
	if !p.tok.Next() || p.tok.Delim != '{' {
		return id, rq, false
	}
	var (
		model, lastContent  string
		haveModel, haveMsgs bool
		userLast            bool
		history, lastMeta   bufSpan
	)
	base := len(p.members)
	for first := true; ; first = false {
		if !p.tok.Next() {
			return id, rq, false
		}
		if p.tok.Delim == '}' && first {
			return id, rq, false // {}: no messages
		}
		if p.tok.Delim == '}' {
			break
		}
		if !first {
			if p.tok.Delim != ',' || !p.tok.Next() {
				return id, rq, false
			}
		}
		key, keyJSON, kok := p.key()
		if !kok {
			return id, rq, false
		}
		if !p.tok.Next() || p.tok.Delim != ':' || !p.tok.Next() {
			return id, rq, false
		}
		if string(key) == "messages" {
			if haveMsgs {
				return id, rq, false
			}
			haveMsgs = true
			var mok bool
			history, lastMeta, lastContent, userLast, mok = p.messages()
			if !mok {
				return id, rq, false
			}
			continue
		}
		val, vok := p.value(0)
		if !vok {
			return id, rq, false
		}
		v := p.buf[val.start:val.end]
		switch string(key) {
		case "model":
			s, sok := p.decodeString(v)
			if !sok || s == "" {
				return id, rq, false // the general path uses Caller.Model or refuses
			}
			model, haveModel = s, true
		case "stream":
			switch string(v) {
			case "true":
				rq.Stream = true
			case "false", "null":
			default:
				return id, rq, false
			}
		}
		if k, checked := paramKinds[string(key)]; checked && string(v) != "null" && !kindOfCanonical(v, k) {
			return id, rq, false
		}
		p.members = append(p.members, member{key: key, keyJSON: keyJSON, val: val})
	}
	if p.tok.Next() || p.tok.Err != nil || !haveModel || !haveMsgs {
		return id, rq, false // trailing data, or a required field missing
	}
	top := p.members[base:]
	if !sortMembers(top) {
		return id, rq, false
	}

	id.Model = model
	rq.Cacheable = userLast
	prompt, context := lastContent, ""
	if rq.Cacheable {
		prompt, context = n.split(prompt)
		context = n.normalizeProse(context)
	}
	id.Normalized = n.normalizeProse(prompt)
	id.Prompt = prompt
	id.Semantic = rq.Cacheable

	// The scope document of seal, keys in sorted order: context, extra,
	// history, last, namespace, params, tenant, v.
	d := p.doc[:0]
	d = append(d, `{"context":`...)
	d = appendJSONString(d, context)
	if len(who.Extra) > 0 {
		d = append(d, `,"extra":`...)
		var err error
		if d, err = appendCanonical(d, who.Extra); err != nil {
			return id, rq, false
		}
	}
	d = append(d, `,"history":`...)
	d = append(d, p.buf[history.start:history.end]...)
	d = append(d, `,"last":`...)
	d = append(d, p.buf[lastMeta.start:lastMeta.end]...)
	d = append(d, `,"namespace":`...)
	d = appendJSONString(d, who.Namespace)
	d = append(d, `,"params":{`...)
	i := 0
	for _, m := range top {
		if ignoredParams[string(m.key)] {
			continue
		}
		if i > 0 {
			d = append(d, ',')
		}
		i++
		d = append(d, m.keyJSON...)
		d = append(d, ':')
		d = append(d, p.buf[m.val.start:m.val.end]...)
	}
	d = append(d, `},"tenant":`...)
	d = appendJSONString(d, who.Tenant)
	d = append(d, `,"v":2}`...)
	p.doc = d
	id.Scope = hashHex(d)
	id.Key = hashHex([]byte(id.Scope + "\x00" + id.Normalized))
	return id, rq, true
}

// bufSpan is a range of canonParser.buf.
type bufSpan struct{ start, end int }

// member is one object member: its key, unescaped, and the bufSpan of its
// value's canonical JSON.
type member struct {
	key, keyJSON []byte
	val          bufSpan
}

// canonParser holds the tokenizer and the scratch space of one
// identifyChatFast call; pooled, since a request needs a few kilobytes.
type canonParser struct {
	tok     fastjson.Tokenizer
	buf     []byte // canonical JSON of values, appended as they are read
	doc     []byte // the scope document
	members []member
	spans   []bufSpan
	plain   bool // see identifyChatFast
}

var canonPool = sync.Pool{New: func() any { return new(canonParser) }}

// maxFastDepth bounds the nesting identifyChatFast follows; deeper bodies
// take the general path.
const maxFastDepth = 64

func (p *canonParser) release() {
	p.tok.Reset(nil)
	p.buf, p.doc = p.buf[:0], p.doc[:0]
	clear(p.members[:cap(p.members)]) // drop the keys' references to the body
	p.members, p.spans = p.members[:0], p.spans[:0]
	if cap(p.buf) > 1<<20 || cap(p.doc) > 1<<20 {
		return // do not keep a huge request's buffers alive
	}
	canonPool.Put(p)
}

// key returns the key the tokenizer is on, unescaped, and its canonical
// JSON (as appendJSONString writes it).
func (p *canonParser) key() (key, keyJSON []byte, ok bool) {
	t := &p.tok
	if !t.IsKey || t.Delim != 0 || len(t.Value) == 0 || t.Value[0] != '"' {
		return nil, nil, false
	}
	v := t.Value
	if t.Kind() == fastjson.Unescaped && (p.plain || !needsEscape(v[1:len(v)-1])) {
		return v[1 : len(v)-1], v, true
	}
	key = t.String()
	return key, appendJSONString(nil, string(key)), true
}

// value appends the canonical JSON of the value the tokenizer is on (its
// first token already read) to p.buf and returns its bufSpan. A nested
// object's members are written to p.buf first and then once more in
// sorted order; the bufSpan is that of the sorted copy.
func (p *canonParser) value(depth int) (bufSpan, bool) {
	if depth > maxFastDepth {
		return bufSpan{}, false
	}
	t := &p.tok
	switch t.Delim {
	case 0:
		return p.scalar()
	case '[':
		base := len(p.spans)
		for first := true; ; first = false {
			if !t.Next() {
				return bufSpan{}, false
			}
			if t.Delim == ']' {
				break
			}
			if !first {
				if t.Delim != ',' || !t.Next() {
					return bufSpan{}, false
				}
			}
			v, ok := p.value(depth + 1)
			if !ok {
				return bufSpan{}, false
			}
			p.spans = append(p.spans, v)
		}
		start := len(p.buf)
		p.buf = append(p.buf, '[')
		for i, v := range p.spans[base:] {
			if i > 0 {
				p.buf = append(p.buf, ',')
			}
			p.buf = append(p.buf, p.buf[v.start:v.end]...)
		}
		p.buf = append(p.buf, ']')
		p.spans = p.spans[:base]
		return bufSpan{start, len(p.buf)}, true
	case '{':
		base := len(p.members)
		if !p.objectMembers(depth) {
			return bufSpan{}, false
		}
		ms := p.members[base:]
		if !sortMembers(ms) {
			return bufSpan{}, false
		}
		s := p.emitObject(ms, "")
		p.members = p.members[:base]
		return s, true
	}
	return bufSpan{}, false
}

// objectMembers reads the members of the object whose '{' the tokenizer
// is on, up to its '}', appending them to p.members in the order sent.
func (p *canonParser) objectMembers(depth int) bool {
	t := &p.tok
	for first := true; ; first = false {
		if !t.Next() {
			return false
		}
		if t.Delim == '}' {
			return true
		}
		if !first {
			if t.Delim != ',' || !t.Next() {
				return false
			}
		}
		k, kj, ok := p.key()
		if !ok || !t.Next() || t.Delim != ':' || !t.Next() {
			return false
		}
		v, ok := p.value(depth + 1)
		if !ok {
			return false
		}
		p.members = append(p.members, member{key: k, keyJSON: kj, val: v})
	}
}

// emitObject appends the object of the sorted members ms, without the
// member named skip (none when empty), to p.buf and returns its bufSpan.
func (p *canonParser) emitObject(ms []member, skip string) bufSpan {
	start := len(p.buf)
	p.buf = append(p.buf, '{')
	i := 0
	for _, m := range ms {
		if skip != "" && string(m.key) == skip {
			continue
		}
		if i > 0 {
			p.buf = append(p.buf, ',')
		}
		i++
		p.buf = append(p.buf, m.keyJSON...)
		p.buf = append(p.buf, ':')
		p.buf = append(p.buf, p.buf[m.val.start:m.val.end]...)
	}
	p.buf = append(p.buf, '}')
	return bufSpan{start, len(p.buf)}
}

// scalar appends the canonical JSON of the string, number, true, false or
// null the tokenizer is on.
func (p *canonParser) scalar() (bufSpan, bool) {
	t := &p.tok
	start := len(p.buf)
	v := t.Value
	switch {
	case len(v) == 0:
		return bufSpan{}, false
	case v[0] == '"':
		if t.Kind() == fastjson.Unescaped && (p.plain || !needsEscape(v[1:len(v)-1])) {
			p.buf = append(p.buf, v...) // already as appendJSONString writes it
		} else {
			p.buf = appendJSONString(p.buf, string(t.String()))
		}
	case v[0] == 't' || v[0] == 'f' || v[0] == 'n':
		p.buf = append(p.buf, v...)
	case plainInteger(v):
		p.buf = append(p.buf, v...) // an integer is its own spelling
	default:
		var err error
		if p.buf, err = appendCanonicalNumber(p.buf, string(v)); err != nil {
			return bufSpan{}, false
		}
	}
	return bufSpan{start, len(p.buf)}, true
}

// messages reads the messages array the tokenizer is on. It returns the
// canonical JSON of every message but the last (history), of the last one
// without its content (last), the last one's content and whether its role
// is "user". ok is false for an empty array, an element that is not an
// object, a role that is not a non-empty string, content that is not a
// string or null (the last one's: not a string), or a key given twice.
func (p *canonParser) messages() (history, last bufSpan, content string, user, ok bool) {
	t := &p.tok
	if t.Delim != '[' {
		return
	}
	base := len(p.spans)
	var lastContent bufSpan // of the last message read; end 0 when not a string
	for first := true; ; first = false {
		if !t.Next() {
			return
		}
		if t.Delim == ']' {
			if first {
				return // empty
			}
			break
		}
		if !first {
			if t.Delim != ',' || !t.Next() {
				return
			}
		}
		if t.Delim != '{' {
			return
		}
		mb := len(p.members)
		if !p.objectMembers(1) {
			return
		}
		ms := p.members[mb:]
		if !sortMembers(ms) {
			return
		}
		var role, cont bufSpan
		for _, m := range ms {
			switch string(m.key) {
			case "role":
				role = m.val
			case "content":
				cont = m.val
			}
		}
		r := p.buf[role.start:role.end]
		if len(r) < 3 || r[0] != '"' {
			return // absent, not a string, or empty
		}
		user = string(r) == `"user"`
		lastContent = bufSpan{}
		if c := p.buf[cont.start:cont.end]; len(c) > 0 {
			switch {
			case c[0] == '"':
				lastContent = cont
			case string(c) != "null":
				return // content parts: the general path checks them
			}
		}
		p.spans = append(p.spans, p.emitObject(ms, ""))
		last = p.emitObject(ms, "content")
		p.members = p.members[:mb]
	}
	if lastContent.end == 0 {
		return // the last message's content is absent or null
	}
	s, sok := p.decodeString(p.buf[lastContent.start:lastContent.end])
	if !sok {
		return
	}
	msgs := p.spans[base:]
	hs := len(p.buf)
	p.buf = append(p.buf, '[')
	for i, v := range msgs[:len(msgs)-1] {
		if i > 0 {
			p.buf = append(p.buf, ',')
		}
		p.buf = append(p.buf, p.buf[v.start:v.end]...)
	}
	p.buf = append(p.buf, ']')
	p.spans = p.spans[:base]
	return bufSpan{hs, len(p.buf)}, last, s, user, true
}

// plainInteger reports whether the number token v is an integer other
// than -0 (appendCanonicalNumber writes those as sent).
func plainInteger(v []byte) bool {
	if string(v) == "-0" {
		return false
	}
	for _, c := range v {
		if (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// decodeString returns the string whose canonical JSON is c.
func (p *canonParser) decodeString(c []byte) (string, bool) {
	if len(c) < 2 || c[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(c, '\\') < 0 {
		return string(c[1 : len(c)-1]), true
	}
	var s string
	if err := fastjson.Unmarshal(c, &s); err != nil {
		return "", false
	}
	return s, true
}

// sortMembers sorts ms by key, bytewise as appendCanonical sorts a map's
// keys, and reports false when a key occurs twice (a decoded map keeps
// only the last; the general path decides those).
func sortMembers(ms []member) bool {
	slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	for i := 1; i < len(ms); i++ {
		if bytes.Equal(ms[i-1].key, ms[i].key) {
			return false
		}
	}
	return true
}

// needsEscape reports whether appendJSONString would escape any byte of
// the raw, escape-free string content s: <, > and &, U+2028 and U+2029
// (valid JSON holds no raw control characters, the body is valid UTF-8).
func needsEscape(s []byte) bool {
	for i, b := range s {
		if !escapeFirst[b] {
			continue
		}
		if b != 0xe2 {
			return true
		}
		if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xa8 || s[i+2] == 0xa9) {
			return true
		}
	}
	return false
}

// escapeFirst marks the bytes needsEscape looks at: control characters,
// <, > and &, and 0xe2, the first byte of U+2028 and U+2029.
var escapeFirst = func() (t [256]bool) {
	for b := range 0x20 {
		t[b] = true
	}
	t['<'], t['>'], t['&'], t[0xe2] = true, true, true, true
	return t
}()

// kindOfCanonical reports whether the canonical JSON value v is of one of
// kinds, as jsonKinds.matches does for its decoded form.
func kindOfCanonical(v []byte, kinds jsonKinds) bool {
	switch v[0] {
	case '"':
		return kinds&kindString != 0
	case 't', 'f':
		return kinds&kindBool != 0
	case '[':
		return kinds&kindArray != 0
	case '{':
		return kinds&kindObject != 0
	}
	if kinds&kindNumber != 0 {
		return true
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return kinds&kindInteger != 0 && err == nil && f == math.Trunc(f)
}

package semantic

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// contextMark stands for the question inside a message's context, so that
// "<ctx> Q" and "Q <ctx>" are different contexts.
const contextMark = "\x00question\x00"

// minContextRunes is the shortest text (non-space runes) the automatic
// paragraph rule treats as a context: shorter leading paragraphs are
// greetings ("Hi,"), part of the question.
const minContextRunes = 80

var (
	// reQuestionLabel finds a question label at a line's start or after a
	// sentence's end: "Question:", "Customer question:", "User query:",
	// "Q:", in any case, optionally in Markdown bold or after a list or
	// heading mark.
	reQuestionLabel = regexp.MustCompile(`(?i)(?:^|\n|[.!?…][ \t]+)[ \t>*#-]*(?:\*\*)?((?:customer|user|client|student|patient|visitor|caller|guest|the|your|new|original|follow-up|followup|my)[ \t]+)?(?:question|query|q|inquiry|enquiry|request|input|ask)(?:\*\*)?[ \t]*[:：](?:\*\*)?[ \t]*`)
	// reNextLabel ends a labelled question: a blank line, or a line that
	// starts with another label ("Answer:", "Context:").
	reNextLabel = regexp.MustCompile(`\n[ \t]*\n|\n[ \t>*#-]*(?:\*\*)?[\p{L}][\p{L}\p{N} _-]{0,30}(?:\*\*)?[ \t]*[:：]`)
	// reParagraphBreak is a blank line.
	reParagraphBreak = regexp.MustCompile(`\n[ \t]*\n`)
)

// split cuts the text of a last user message into the question, which is
// embedded and compared, and its context (everything else, with
// contextMark where the question was), which becomes part of the scope, so
// that a changed context can never be served another context's answer. ""
// context means the whole message is the question. The rules, in order:
//
//  1. Normalization.Question, when set and matching: its group "question".
//  2. Unless Normalization.WholeMessage: the text after the last question
//     label ("Question:", "Customer question:", "Q:" ...; see
//     reQuestionLabel) up to a blank line, the next "Label:" line or the
//     end.
//  3. Unless Normalization.WholeMessage: in a message of several
//     paragraphs (blank-line separated) whose other paragraphs hold at
//     least minContextRunes non-space runes, the last paragraph with a "?",
//     or else the last paragraph.
//
// Blank lines and labels inside fenced code blocks are not looked at. A
// split that would leave an empty question is not made.
func (n Normalization) split(text string) (question, context string) {
	if n.Question != nil {
		if m := n.Question.FindStringSubmatchIndex(text); m != nil {
			if g := n.Question.SubexpIndex("question"); g > 0 && m[2*g] >= 0 {
				if q, c, ok := cut(text, m[2*g], m[2*g+1]); ok {
					return q, c
				}
			}
		}
	}
	if n.WholeMessage {
		return text, ""
	}
	if !strings.ContainsAny(text, ":：\n") {
		return text, "" // no label and no paragraph: nothing to split
	}
	masked := maskFences(text)
	if ms := reQuestionLabel.FindAllStringIndex(masked, -1); ms != nil {
		start := ms[len(ms)-1][1]
		end := len(text)
		if e := reNextLabel.FindStringIndex(masked[start:]); e != nil {
			end = start + e[0]
		}
		if q, c, ok := cut(text, start, end); ok {
			return q, c
		}
	}
	breaks := reParagraphBreak.FindAllStringIndex(masked, -1)
	if len(breaks) == 0 {
		return text, ""
	}
	// Paragraph i spans [bounds[i], bounds[i+1]).
	bounds := []int{0}
	for _, b := range breaks {
		bounds = append(bounds, b[1])
	}
	bounds = append(bounds, len(text))
	pick := len(bounds) - 2
	for i := len(bounds) - 2; i >= 0; i-- {
		if strings.Contains(masked[bounds[i]:bounds[i+1]], "?") {
			pick = i
			break
		}
	}
	q, c, ok := cut(text, bounds[pick], bounds[pick+1])
	if !ok || nonSpaceRunes(c) < minContextRunes+len(contextMark) {
		return text, ""
	}
	return q, c
}

// cut returns text[start:end] trimmed as the question and the rest, with
// contextMark in its place, as the context; ok is false when the question
// or the context would be empty.
func cut(text string, start, end int) (q, c string, ok bool) {
	q = strings.TrimSpace(text[start:end])
	c = text[:start] + contextMark + text[end:]
	if q == "" || strings.TrimSpace(text[:start]+text[end:]) == "" {
		return "", "", false
	}
	return q, c, true
}

// maskFences returns s with the bytes inside fenced code blocks replaced
// by 'x' (newlines included), so that paragraph and label rules skip code.
// Offsets into the result are offsets into s.
func maskFences(s string) string {
	ms := reFenced.FindAllStringIndex(s, -1)
	if ms == nil {
		return s
	}
	b := []byte(s)
	for _, m := range ms {
		for i := m[0]; i < m[1]; i++ {
			b[i] = 'x'
		}
	}
	return string(b)
}

func nonSpaceRunes(s string) int {
	n := 0
	for _, f := range strings.Fields(s) {
		n += utf8.RuneCountInString(f)
	}
	return n
}

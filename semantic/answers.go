package semantic

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// answerObject returns the "object" field of a JSON answer body ("" when
// it has none or is not an object).
func answerObject(body []byte) string {
	var o struct {
		Object string `json:"object"`
	}
	_ = json.Unmarshal(body, &o)
	return o.Object
}

// responseAnswer is the part of a Responses API answer the cache reads.
type responseAnswer struct {
	Status string `json:"status"`
	Output []struct {
		Type    string          `json:"type"`
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
		Name    string          `json:"name"`
		Args    *string         `json:"arguments"`
	} `json:"output"`
	Usage *struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// cacheableResponse reports whether a Responses API answer may be stored:
// status "completed" (never in_progress, incomplete, failed, cancelled or
// queued) with at least one output item. Its usage's input and output
// tokens are the prompt and completion tokens saved by a hit.
func cacheableResponse(body []byte) (Usage, bool) {
	var r responseAnswer
	if json.Unmarshal(body, &r) != nil || r.Status != "completed" || len(r.Output) == 0 {
		return Usage{}, false
	}
	var u Usage
	if r.Usage != nil {
		u = Usage{PromptTokens: r.Usage.InputTokens, CompletionTokens: r.Usage.OutputTokens}
	}
	return u, true
}

// completionAnswer is the part of a legacy completion the cache reads.
type completionAnswer struct {
	Choices []struct {
		Text         *string `json:"text"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage Usage `json:"usage"`
}

// cacheableCompletion reports whether a legacy completion may be stored:
// at least one choice, each with string text and a finish reason in
// storableFinish.
func cacheableCompletion(body []byte) (Usage, bool) {
	var c completionAnswer
	if json.Unmarshal(body, &c) != nil || len(c.Choices) == 0 {
		return Usage{}, false
	}
	for _, ch := range c.Choices {
		if ch.Text == nil || ch.FinishReason == nil || !storableFinish[*ch.FinishReason] {
			return Usage{}, false
		}
	}
	return c.Usage, true
}

// answerTextOther returns the text of a Responses API answer (its
// output_text and refusal parts, and each function call as name and
// arguments) or of a legacy completion (its choices' text, separated by a
// blank line), and true; or false when body is neither.
func answerTextOther(body []byte) (string, bool, error) {
	switch answerObject(body) {
	case "response":
		var r responseAnswer
		if err := json.Unmarshal(body, &r); err != nil {
			return "", true, fmt.Errorf("not a response: %w", err)
		}
		var parts []string
		for _, it := range r.Output {
			switch it.Type {
			case "message":
				var content []struct {
					Type    string `json:"type"`
					Text    string `json:"text"`
					Refusal string `json:"refusal"`
				}
				_ = json.Unmarshal(it.Content, &content)
				for _, c := range content {
					parts = append(parts, c.Text+c.Refusal)
				}
			case "function_call":
				args := ""
				if it.Args != nil {
					args = *it.Args
				}
				parts = append(parts, it.Name+" "+args)
			}
		}
		if len(parts) == 0 {
			return "", true, errors.New("not a response: no message or function call output")
		}
		return strings.Join(parts, "\n\n"), true, nil
	case "text_completion":
		var c completionAnswer
		if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) == 0 {
			return "", true, errors.New("not a text completion: no choices")
		}
		parts := make([]string, len(c.Choices))
		for i, ch := range c.Choices {
			if ch.Text != nil {
				parts[i] = *ch.Text
			}
		}
		return strings.Join(parts, "\n\n"), true, nil
	}
	return "", false, nil
}

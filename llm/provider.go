package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"google.golang.org/genai"
)

// Request is one call to a model: the instructions and the data travel
// in separate parts (Gemini's systemInstruction and the user content; the
// system and the user message on OpenAI), and the reply must follow Schema.
type Request struct {
	Model           string
	System          string
	Data            string
	Schema          map[string]any
	MaxOutputTokens int
}

// Response is the model's raw reply, kept verbatim for the audit log.
type Response struct {
	Text         string
	PromptTokens int
	OutputTokens int
	// Truncated: the model stopped at the output limit, so Text is cut.
	Truncated bool
}

// Provider sends a Request to one vendor's API through its official SDK.
type Provider interface {
	Name() string
	Complete(ctx context.Context, req Request) (Response, error)
}

// StatusError is an HTTP error from the provider; 429 and 5xx are retried.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Message) }

// Retryable reports whether another try may succeed.
func (e *StatusError) Retryable() bool { return e.Code == http.StatusTooManyRequests || e.Code >= 500 }

// Gemini talks to the Gemini API's generateContent through
// google.golang.org/genai, the official successor of the deprecated
// github.com/google/generative-ai-go.
type Gemini struct {
	client *genai.Client
}

// NewGemini makes a Gemini provider. baseURL overrides the API's address
// (empty: Google's); the SDK's own retries are off, the Client retries.
func NewGemini(ctx context.Context, apiKey, baseURL string, hc *http.Client) (*Gemini, error) {
	cfg := &genai.ClientConfig{APIKey: apiKey, Backend: genai.BackendGeminiAPI, HTTPClient: hc}
	if baseURL != "" {
		cfg.HTTPOptions.BaseURL = baseURL
	}
	c, err := genai.NewClient(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("gemini client: %w", err)
	}
	return &Gemini{client: c}, nil
}

// Name is the provider label of the metrics.
func (g *Gemini) Name() string { return "gemini" }

// Complete sends one generateContent request with a JSON response schema.
func (g *Gemini) Complete(ctx context.Context, req Request) (Response, error) {
	zero := float32(0)
	cfg := &genai.GenerateContentConfig{
		SystemInstruction:  &genai.Content{Parts: []*genai.Part{{Text: req.System}}},
		ResponseMIMEType:   "application/json",
		ResponseJsonSchema: req.Schema,
		MaxOutputTokens:    int32(req.MaxOutputTokens),
		Temperature:        &zero,
	}
	resp, err := g.client.Models.GenerateContent(ctx, req.Model, []*genai.Content{{Role: genai.RoleUser, Parts: []*genai.Part{{Text: req.Data}}}}, cfg)
	if err != nil {
		var ae genai.APIError
		if errors.As(err, &ae) {
			return Response{}, &StatusError{Code: ae.Code, Message: ae.Message}
		}
		var pae *genai.APIError
		if errors.As(err, &pae) {
			return Response{}, &StatusError{Code: pae.Code, Message: pae.Message}
		}
		return Response{}, err
	}
	out := Response{Text: resp.Text()}
	if u := resp.UsageMetadata; u != nil {
		out.PromptTokens, out.OutputTokens = int(u.PromptTokenCount), int(u.CandidatesTokenCount)
	}
	if len(resp.Candidates) > 0 && resp.Candidates[0].FinishReason == genai.FinishReasonMaxTokens {
		out.Truncated = true
	}
	return out, nil
}

// OpenAI talks to any OpenAI-compatible chat completions API through
// openai-go: OpenAI itself, or Ollama, vLLM, llama.cpp's server and LM
// Studio at their base URLs.
type OpenAI struct {
	client openai.Client
}

// NewOpenAI makes an OpenAI-compatible provider; baseURL is, for example,
// http://127.0.0.1:11434/v1 for Ollama. The SDK's own retries are off.
func NewOpenAI(apiKey, baseURL string, hc *http.Client) *OpenAI {
	opts := []option.RequestOption{option.WithAPIKey(apiKey), option.WithMaxRetries(0)}
	if baseURL != "" {
		opts = append(opts, option.WithBaseURL(strings.TrimRight(baseURL, "/")+"/"))
	}
	if hc != nil {
		opts = append(opts, option.WithHTTPClient(hc))
	}
	return &OpenAI{client: openai.NewClient(opts...)}
}

// Name is the provider label of the metrics.
func (o *OpenAI) Name() string { return "openai" }

// Complete sends one chat completion with response_format json_schema,
// strict.
func (o *OpenAI) Complete(ctx context.Context, req Request) (Response, error) {
	params := openai.ChatCompletionNewParams{
		Model:    req.Model,
		Messages: []openai.ChatCompletionMessageParamUnion{openai.SystemMessage(req.System), openai.UserMessage(req.Data)},
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "diagnosis", Strict: openai.Bool(true), Schema: req.Schema},
		}},
		Temperature: openai.Float(0),
	}
	if req.MaxOutputTokens > 0 {
		params.MaxCompletionTokens = openai.Int(int64(req.MaxOutputTokens))
	}
	resp, err := o.client.Chat.Completions.New(ctx, params)
	if err != nil {
		var ae *openai.Error
		if errors.As(err, &ae) {
			return Response{}, &StatusError{Code: ae.StatusCode, Message: ae.Message}
		}
		return Response{}, err
	}
	if len(resp.Choices) == 0 {
		return Response{}, errors.New("the reply has no choices")
	}
	ch := resp.Choices[0]
	return Response{Text: ch.Message.Content, PromptTokens: int(resp.Usage.PromptTokens), OutputTokens: int(resp.Usage.CompletionTokens),
		Truncated: ch.FinishReason == "length"}, nil
}

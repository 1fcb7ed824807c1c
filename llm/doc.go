// Package llm asks a language model about incidents that no runbook
// covers: it builds a bounded, sanitised incident context, sends it through
// a provider (Gemini through google.golang.org/genai, or any
// OpenAI-compatible chat completions API through openai-go), and parses the
// one reply shape the response schema allows. It never executes anything:
// what the model proposes is validated and policy-checked by engine/.
//
// llm imports nothing of medic's.
package llm

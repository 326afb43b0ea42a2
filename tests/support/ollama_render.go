// Renders an Ollama TEMPLATE as Ollama's server does for a chat (server/prompt.go and template/template.go):
// messages collated (consecutive turns of one role joined by a blank line), .System the system messages'
// text, .Messages every message, executed with Go's text/template. Reads {"template": …, "messages":
// [{"role": …, "content": …}]} on stdin and writes the rendered prompt to stdout. A test harness for
// tests/export_ollama.rs (the golden test of the TEMPLATE tunebench derives); Ollama itself is not installed.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"
)

type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type input struct {
	Template string    `json:"template"`
	Messages []Message `json:"messages"`
}

func collate(msgs []Message) (string, []*Message) {
	var system []string
	var collated []*Message
	for i := range msgs {
		msg := msgs[i]
		if msg.Role == "system" {
			system = append(system, msg.Content)
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == msg.Role {
			collated[len(collated)-1].Content += "\n\n" + msg.Content
		} else {
			collated = append(collated, &msg)
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func main() {
	var in input
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		fmt.Fprintln(os.Stderr, "reading input:", err)
		os.Exit(2)
	}
	tmpl, err := template.New("").Option("missingkey=zero").Parse(in.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, "parsing the TEMPLATE:", err)
		os.Exit(1)
	}
	system, messages := collate(in.Messages)
	values := map[string]any{"System": system, "Messages": messages, "Tools": nil, "Response": "", "Prompt": ""}
	if err := tmpl.Execute(os.Stdout, values); err != nil {
		fmt.Fprintln(os.Stderr, "executing the TEMPLATE:", err)
		os.Exit(1)
	}
}

package cli

import (
	"errors"
	"fmt"
	"strings"
)

// directivePrefix starts an sbatch option line in a batch script.
const directivePrefix = "#SBATCH"

// directive is the words of one #SBATCH line.
type directive struct {
	line  int // 1-based
	words []string
}

// scanDirectives returns the #SBATCH lines of script as Slurm reads them:
// only those before the first line that is neither blank nor a comment
// (the shebang is a comment), so "#SBATCH" after the first command is
// ignored, as it is by Slurm. Text after an unquoted '#' that starts a word
// is a comment. The line must start with "#SBATCH" (no blanks before it).
func scanDirectives(script string) ([]directive, error) {
	var out []directive
	for i, line := range strings.Split(script, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" {
			continue
		}
		if !strings.HasPrefix(trimmed, "#") {
			break
		}
		// As in Slurm, the options start right after "#SBATCH", blank or
		// not: "#SBATCH--time=1:00" sets the time limit, and "#SBATCHX"
		// is a directive with a bad argument, not a comment.
		rest, ok := strings.CutPrefix(line, directivePrefix)
		if !ok {
			continue // a comment, or "# SBATCH"
		}
		words, err := splitDirectiveWords(rest)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if len(words) > 0 {
			out = append(out, directive{line: i + 1, words: words})
		}
	}
	return out, nil
}

// splitDirectiveWords splits the options of one #SBATCH line at blanks,
// honouring single and double quotes (removed) and backslash escapes
// outside single quotes; a word starting with '#' starts a comment.
func splitDirectiveWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
				i++
				cur.WriteByte(s[i])
			} else {
				cur.WriteByte(c)
			}
		case c == ' ' || c == '\t' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '#' && !inWord:
			return words, nil
		case c == '"' || c == '\'':
			quote, inWord = c, true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// checkScript refuses what Slurm refuses: an empty script, one without an
// interpreter line, and DOS line ends (which break the interpreter line).
func checkScript(script string) error {
	switch {
	case strings.TrimSpace(script) == "":
		return errors.New("batch script is empty")
	case !strings.HasPrefix(script, "#!"):
		return errors.New("this does not look like a batch script: the first line must start with #! followed by the path to an interpreter, such as #!/bin/bash")
	case strings.Contains(script, "\r\n"):
		return errors.New("batch script contains DOS line breaks (\\r\\n) instead of expected UNIX line breaks (\\n); convert it with dos2unix")
	}
	return nil
}

//! Chat templates: how a conversation becomes the prompt text, for the in-process tokenizer and
//! for served models alike. The family is recognised from the model's Jinja template and
//! rendered natively (no Jinja engine).

/// How a conversation is rendered into the prompt text. The family is recognised from the
/// model's Jinja template (GGUF `tokenizer.chat_template`, or `tokenizer_config.json`); ponder
/// renders it natively rather than running Jinja.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatTemplate {
    /// `<|im_start|>{role}\n{content}<|im_end|>\n`, then `<|im_start|>assistant\n` (SmolLM2,
    /// Qwen2); the default system message is inserted when the template has one and none is
    /// given.
    ChatMl {
        /// The template's default system message, if any.
        default_system: Option<String>,
    },
    /// Llama 3: `<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>` after
    /// `<|begin_of_text|>`.
    Llama3,
    /// Mistral / Llama 2: `<s>[INST] {user} [/INST]`. Llama 2 wraps a system message in
    /// `<<SYS>>` tags inside the first instruction; Mistral, which has no system role, puts it
    /// before the user text.
    Inst {
        /// Whether the template uses Llama 2's `<<SYS>>` block.
        sys_block: bool,
    },
    /// Zephyr / TinyLlama-Chat: `<|{role}|>\n{content}</s>\n`, then `<|assistant|>\n`.
    Zephyr,
    /// No template: the user text as is (base models, or a template ponder does not know).
    Plain,
}

impl ChatTemplate {
    /// Recognises the template family from its Jinja source; anything unrecognised is
    /// [`ChatTemplate::Plain`].
    pub fn from_jinja(src: Option<&str>) -> Self {
        let Some(s) = src else {
            return ChatTemplate::Plain;
        };
        if s.contains("<|start_header_id|>") {
            ChatTemplate::Llama3
        } else if s.contains("<|im_start|>") {
            let marker = "<|im_start|>system\n";
            let default_system = s.find(marker).and_then(|i| {
                let rest = &s[i + marker.len()..];
                rest.find("<|im_end|>").map(|j| rest[..j].to_string())
            });
            ChatTemplate::ChatMl {
                default_system: default_system.filter(|d| !d.contains('{')),
            }
        } else if s.contains("[INST]") {
            ChatTemplate::Inst {
                sys_block: s.contains("<<SYS>>"),
            }
        } else if s.contains("<|user|>") && s.contains("<|assistant|>") {
            ChatTemplate::Zephyr
        } else {
            ChatTemplate::Plain
        }
    }

    /// A Jinja template of the family (what an exported checkpoint's `tokenizer_config.json`
    /// carries; [`ChatTemplate::from_jinja`] recognises it again, and HF `transformers` can run
    /// it).
    pub fn to_jinja(&self) -> Option<String> {
        let loop_ = |turn: &str, prompt: &str| {
            format!(
                "{{% for message in messages %}}{turn}{{% endfor %}}{{% if add_generation_prompt %}}{prompt}{{% endif %}}"
            )
        };
        Some(match self {
            ChatTemplate::ChatMl { default_system } => {
                let sys = default_system.as_ref().map_or(String::new(), |d| {
                    format!(
                        "{{% if messages[0]['role'] != 'system' %}}<|im_start|>system\n{d}<|im_end|>\n{{% endif %}}"
                    )
                });
                format!(
                    "{sys}{}",
                    loop_(
                        "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n",
                        "<|im_start|>assistant\n"
                    )
                )
            }
            ChatTemplate::Llama3 => format!(
                "<|begin_of_text|>{}",
                loop_(
                    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>",
                    "<|start_header_id|>assistant<|end_header_id|>\n\n"
                )
            ),
            ChatTemplate::Inst { sys_block: true } => "<s>{% for message in messages %}{% if message['role'] == 'system' %}[INST] <<SYS>>\n{{ message['content'] }}\n<</SYS>>\n\n{% elif message['role'] == 'user' %}{{ message['content'] }} [/INST]{% endif %}{% endfor %}".into(),
            ChatTemplate::Inst { sys_block: false } => "<s>{% for message in messages %}{% if message['role'] == 'user' %}[INST] {{ message['content'] }} [/INST]{% endif %}{% endfor %}".into(),
            ChatTemplate::Zephyr => loop_(
                "<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n",
                "<|assistant|>\n",
            ),
            ChatTemplate::Plain => return None,
        })
    }

    /// Renders one user turn, ready for the assistant's reply.
    pub fn render(&self, system: Option<&str>, user: &str) -> String {
        match self {
            ChatTemplate::ChatMl { default_system } => {
                let mut s = String::new();
                if let Some(sys) = system.or(default_system.as_deref()) {
                    s.push_str(&format!("<|im_start|>system\n{sys}<|im_end|>\n"));
                }
                s.push_str(&format!(
                    "<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
                ));
                s
            }
            ChatTemplate::Llama3 => {
                let turn = |role: &str, text: &str| {
                    format!("<|start_header_id|>{role}<|end_header_id|>\n\n{text}<|eot_id|>")
                };
                let mut s = String::from("<|begin_of_text|>");
                if let Some(sys) = system {
                    s.push_str(&turn("system", sys));
                }
                s.push_str(&turn("user", user));
                s.push_str("<|start_header_id|>assistant<|end_header_id|>\n\n");
                s
            }
            ChatTemplate::Inst { sys_block } => match (system, sys_block) {
                (Some(sys), true) => {
                    format!("<s>[INST] <<SYS>>\n{sys}\n<</SYS>>\n\n{user} [/INST]")
                }
                (Some(sys), false) => format!("<s>[INST] {sys}\n\n{user} [/INST]"),
                (None, _) => format!("<s>[INST] {user} [/INST]"),
            },
            ChatTemplate::Zephyr => {
                let mut s = String::new();
                if let Some(sys) = system {
                    s.push_str(&format!("<|system|>\n{sys}</s>\n"));
                }
                s.push_str(&format!("<|user|>\n{user}</s>\n<|assistant|>\n"));
                s
            }
            ChatTemplate::Plain => user.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_families_are_recognised_and_rendered() {
        // Fragments of the real templates (Llama 3.x, Mistral, Llama 2, Zephyr).
        let llama3 = "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>{% endfor %}";
        let t = ChatTemplate::from_jinja(Some(llama3));
        assert_eq!(t, ChatTemplate::Llama3);
        assert_eq!(
            t.render(Some("S"), "Q"),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        let mistral = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endif %}{% endfor %}";
        let t = ChatTemplate::from_jinja(Some(mistral));
        assert_eq!(t, ChatTemplate::Inst { sys_block: false });
        assert_eq!(t.render(None, "Q"), "<s>[INST] Q [/INST]");
        assert_eq!(t.render(Some("S"), "Q"), "<s>[INST] S\n\nQ [/INST]");
        let llama2 = "{% if system %}{{ '<<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' }}{% endif %}[INST] {{ content }} [/INST]";
        let t = ChatTemplate::from_jinja(Some(llama2));
        assert_eq!(
            t.render(Some("S"), "Q"),
            "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]"
        );
        let zephyr = "{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|user|>\\n' + m['content'] + eos_token }}{% endif %}{% endfor %}{{ '<|assistant|>' }}";
        let t = ChatTemplate::from_jinja(Some(zephyr));
        assert_eq!(t, ChatTemplate::Zephyr);
        assert_eq!(t.render(None, "Q"), "<|user|>\nQ</s>\n<|assistant|>\n");
        assert_eq!(
            ChatTemplate::from_jinja(Some("{{ messages }}")),
            ChatTemplate::Plain
        );
    }
}

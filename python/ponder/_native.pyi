"""Type stubs of the compiled module (`ponder._native`)."""

from os import PathLike
from typing import Any, Callable, Literal, Mapping, Optional, Sequence, Union

__version__: str

class PonderError(Exception):
    """Bad settings, a model that cannot be loaded, a failed search, or a Python critic or
    task that raised; the message names the cause."""

Question = Union[str, Mapping[str, Any]]
"""A question string, or a dict with `question` and optionally `answer` (or `gold`) and `id`."""

PathDict = dict[str, Any]
"""What a Python critic gets per path: `question`, `prompt`, `steps` (list of str), `text`,
`depth`, `terminal`."""

class Result:
    """One search's outcome."""

    id: str
    answer: Optional[str]
    correct: Optional[bool]
    steps: list[str]
    score: Optional[float]
    stop: Literal["budget", "wall_time", "tokens", "nodes", "cancelled", ""]
    error: Optional[str]
    @property
    def text(self) -> str: ...
    @property
    def stats(self) -> dict[str, Any]: ...
    @property
    def tree(self) -> dict[str, Any]: ...
    @property
    def pairs(self) -> list[dict[str, Any]]: ...
    def to_dict(self) -> dict[str, Any]: ...

class Searcher:
    """Loads a model and its critics once; searches questions with them.

    `model`: a GGUF file, an HF folder or an installed model's name (`smollm2-135m`,
    `qwen2.5-0.5b`); `config`: a TOML file path or a dict shaped like it; `endpoint`: an
    OpenAI-compatible server's URL (the remote policy); `policy`: `llm`, `remote` or
    `synthetic` (the test double); `critics`: `{"value"|"prm"|"orm": f}` with
    `f(paths: list[PathDict]) -> list[float]` in [0, 1], replacing the configured critic of
    that kind; `task`: an object with `prompt(question) -> str`, `extract_answer(text) -> str |
    None`, `check(answer, gold) -> bool`. Other keywords set config values: `simulations`,
    `threads`, `algorithm`, `seed`, `max_tokens`, `max_depth`, `wall_seconds`, `n`,
    `temperature`, `backend`, `weights`, `max_batch`, `shots`, `preset`, or any dotted key
    with `__` for the dots (`search__selection__rule="puct"`).
    """

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        config: Union[str, PathLike[str], Mapping[str, Any], None] = None,
        endpoint: Optional[str] = None,
        policy: Optional[Literal["llm", "remote", "synthetic"]] = None,
        critics: Optional[Mapping[str, Callable[[list[PathDict]], Sequence[float]]]] = None,
        task: Any = None,
        **overrides: Any,
    ) -> None: ...
    @property
    def config(self) -> dict[str, Any]: ...
    def search(self, question: str, gold: Optional[str] = None) -> Result: ...
    def search_many(
        self,
        questions: list[Question],
        parallel_trees: Optional[int] = None,
        progress: Optional[Callable[[int, int], Any]] = None,
    ) -> list[Result]: ...
    def generate(
        self,
        dataset: Union[str, PathLike[str], list[Question]],
        out: Union[str, PathLike[str]],
        *,
        force: bool = False,
        dump_trees: bool = False,
        fsync: bool = False,
        parallel_trees: Optional[int] = None,
        progress: Optional[Callable[[int, int], Any]] = None,
    ) -> dict[str, Any]: ...

def write_test_gguf(path: Union[str, PathLike[str]], seed: int) -> None:
    """Writes the tiny random-weight GGUF the test suites use (a test double)."""

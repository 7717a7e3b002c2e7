"""A model folder's tokenizer.json through the `tokenizers` library, in this process or in a helper process.

`FileTokenizer` is the part of a transformers fast tokenizer the engine uses (encode with or without special
tokens, decode, the special ids), for the tokenizer classes that transformers runs exactly as tokenizer.json is
written. For the others it raises `Unsupported` and the caller asks transformers.

The helper process is for one-shot commands. Gemma 3's tokenizer.json (262,144 tokens, 514,906 merges) takes
1.2 s to parse, all of it holding the GIL, so a thread cannot overlap it with importing torch (1.0-1.6 s); a
second process can, on the second core. `circuitboard trace` starts one before it imports torch
(`start_tokenizer`), and the engine's few dozen calls per trace (the prompt's ids, one decode per shown token)
go over a pipe as JSON lines (`RemoteTokenizer`). Where the helper cannot answer, the caller loads the file in
its own process, so a broken file fails with the library's own message. This module imports neither torch nor
transformers: it also runs as the helper (`python -m circuitboard.engine.file_tokenizer FOLDER`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class Unsupported(Exception):
    """The folder needs transformers to load; the message says why."""


@dataclass(frozen=True)
class Encoding:
    input_ids: list[int]


# Tokenizer classes that transformers 5 runs as tokenizer.json says: the generic backends, and Gemma's, whose
# class sets the same normalizer, pre-tokenizer and decoder it writes into the file. Other classes rebuild parts
# of the pipeline by their own rules, and so does transformers for these model types whatever the file declares
# (its MODELS_WITH_INCORRECT_HUB_TOKENIZER_CLASS): for those, the tokenizer comes from transformers.
_FILE_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast", "GemmaTokenizer", "GemmaTokenizerFast")
_CLASS_TOKENIZED_TYPES = ("qwen2",)
_SPECIAL = ("bos_token_id", "eos_token_id", "unk_token_id", "pad_token_id", "all_special_ids")


class FileTokenizer:
    """tokenizer.json with the special tokens of tokenizer_config.json."""

    def __init__(self, folder: Path, model_type: str):
        from tokenizers import Tokenizer

        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        if cfg.get("clean_up_tokenization_spaces"):
            raise Unsupported("the tokenizer cleans up spaces when it decodes")
        if cfg.get("tokenizer_class") not in _FILE_TOKENIZERS or model_type in _CLASS_TOKENIZED_TYPES:
            raise Unsupported(f"transformers builds the {cfg.get('tokenizer_class')} tokenizer of {model_type} itself")
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        named: dict[str, int | None] = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            named[key] = self._id(cfg.get(key))
        self.bos_token_id, self.eos_token_id = named["bos_token"], named["eos_token"]
        self.unk_token_id, self.pad_token_id = named["unk_token"], named["pad_token"]
        extra = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []
        extra = list(extra.values()) if isinstance(extra, dict) else list(extra)
        ids = [*named.values(), *(self._id(t) for t in extra)]
        self.all_special_ids = sorted({i for i in ids if i is not None})

    def _id(self, token: Any) -> int | None:
        if isinstance(token, dict):
            token = token.get("content")
        return self._tok.token_to_id(token) if isinstance(token, str) else None

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return Encoding(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


def model_type_of(folder: Path) -> str:
    return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))


# ----------------------------------------------------------------------------------------------- helper process


class RemoteTokenizer:
    """FileTokenizer's interface, answered by the helper process that holds one."""

    def __init__(self, proc: subprocess.Popen[str], hello: dict[str, Any]):
        self._proc = proc
        self._len = int(hello["len"])
        self.bos_token_id: int | None = hello["bos_token_id"]
        self.eos_token_id: int | None = hello["eos_token_id"]
        self.unk_token_id: int | None = hello["unk_token_id"]
        self.pad_token_id: int | None = hello["pad_token_id"]
        self.all_special_ids: list[int] = list(hello["all_special_ids"])

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
            reply = _read(self._proc.stdout)
        except (OSError, ValueError) as e:
            raise RuntimeError(f"the tokenizer process ended ({e})") from None
        if "error" in reply:
            raise ValueError(f"tokenizer: {reply['error']}")
        return reply["result"]

    def __call__(self, text: str, add_special_tokens: bool = True) -> Encoding:
        return Encoding([int(i) for i in self._ask({"op": "encode", "text": text, "special": add_special_tokens})])

    def decode(self, ids: list[int]) -> str:
        return str(self._ask({"op": "decode", "ids": [int(i) for i in ids]}))

    def __len__(self) -> int:
        return self._len

    def close(self) -> None:
        """End the helper (it also ends by itself when this process does: its input closes)."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=10)


class PendingTokenizer:
    """A helper process loading a folder's tokenizer; `result()` waits for it."""

    def __init__(self, folder: Path):
        # -I would drop the environment that makes circuitboard importable (an editable install, PYTHONPATH)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "circuitboard.engine.file_tokenizer", str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",  # the replies are ASCII anyway: json.dumps escapes the rest, lone surrogates too
        )

    def result(self) -> RemoteTokenizer | None:
        """The tokenizer, or None where the helper could not load it (unsupported class, a broken file, no
        helper): the caller then loads it in its own process."""
        assert self._proc.stdout is not None
        try:
            hello = _read(self._proc.stdout)
        except ValueError:
            hello = {}
        if not hello.get("ok"):
            self.cancel()
            return None
        return RemoteTokenizer(self._proc, hello)

    def cancel(self) -> None:
        self._proc.kill()
        self._proc.wait()


def start_tokenizer(folder: str | Path) -> PendingTokenizer | None:
    """Start loading a plain model folder's tokenizer in a helper process (None: not such a folder)."""
    path = Path(folder)
    if not (path.is_dir() and (path / "tokenizer.json").exists() and (path / "config.json").exists()):
        return None
    try:
        return PendingTokenizer(path)
    except OSError:
        return None


def _read(stream: IO[str]) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        raise ValueError("no reply")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError("not a reply")
    return reply


def _serve(folder: Path, inp: IO[str], out: IO[str]) -> None:
    def send(obj: dict[str, Any]) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    try:
        tok = FileTokenizer(folder, model_type_of(folder))
    except Exception as e:  # the caller loads in its own process and fails there with the real error
        send({"ok": False, "why": f"{type(e).__name__}: {e}"})
        return
    send({"ok": True, "len": len(tok), **{k: getattr(tok, k) for k in _SPECIAL}})
    for line in inp:
        try:
            req = json.loads(line)
            if req["op"] == "encode":
                result: Any = tok(req["text"], add_special_tokens=bool(req["special"])).input_ids
            else:
                result = tok.decode(req["ids"])
            send({"result": result})
        except Exception as e:  # one bad request fails that call only
            send({"error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    _serve(Path(sys.argv[1]), sys.stdin, sys.stdout)

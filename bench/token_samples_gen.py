"""Remake tests/data/token_samples.json (ADR 22): samples of many kinds of text, counted by OpenAI's tokenizers.

    python bench/token_samples_gen.py /tmp/tok/samples.json
    (cd /tmp/tok && npm install js-tiktoken@1 && node /path/to/bench/token_samples_count.mjs samples.json truth.json)
    python bench/token_samples_gen.py --merge /tmp/tok/samples.json /tmp/tok/truth.json tests/data/token_samples.json
"""

from __future__ import annotations

import base64
import json
import random
import string
import sys
import uuid
from pathlib import Path


def samples() -> dict[str, str]:
    rng = random.Random(7)
    en = ("The quick brown fox jumps over the lazy dog. Streaming chat servers keep replies flowing when clients "
          "reconnect, reload or switch networks; every event has an id so nothing is lost or repeated. ") * 4
    es = ("La información del servidor llega en tiempo real; los mensajes se guardan y nadie pierde su conversación "
          "cuando la conexión se corta. ¿Qué pasa si el modelo tarda? Esperamos y reintentamos. ") * 4
    py = (Path(__file__).parent.parent / "gima_server" / "streams" / "reply.py").read_text()[:3000]
    zh = "流式聊天服务器在客户端重新连接时保持回复不断，每个事件都有编号，因此不会丢失或重复。" * 6
    ja = "ストリーミングチャットサーバーは、クライアントが再接続してもメッセージを失いません。" * 6
    ar = "يحافظ خادم الدردشة على تدفق الردود عند إعادة اتصال العملاء ولا يضيع أي حدث. " * 6
    ru = "Сервер чата продолжает отвечать, когда клиенты переподключаются, и ничего не теряется. " * 6
    digits = " ".join(str(rng.randint(0, 10**9)) for _ in range(200))
    emoji = "".join(rng.choice("😀😂🥲🤖🚀🔥✨🎉👍🏽❤️🧠🌍") for _ in range(300))
    rnd = "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " ") for _ in range(1500))
    lower = " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 14)))
                     for _ in range(200))
    b64 = base64.b64encode(rng.randbytes(1500)).decode()
    hexs = rng.randbytes(800).hex()
    js = json.dumps([{"id": i, "ok": i % 2 == 0, "v": [i, i * 2.5], "k": f"key{i}"} for i in range(80)],
                    separators=(",", ":"))
    jsp = json.dumps([{"id": i, "name": f"user {i}", "tags": ["a", "b"]} for i in range(60)], indent=2)
    uuids = " ".join(uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(60))
    md = ("# Title\n\n- item one\n- item **two**\n\n```python\nfor i in range(10):\n    print(i)\n```\n\n"
          "| a | b |\n|---|---|\n| 1 | 2 |\n") * 8
    ws = "a" + " " * 500 + "b\n\n\n\n\t\t\t" * 50
    mixed = en[:300] + js[:300] + zh[:60] + emoji[:40]
    return dict(en=en, es=es, py=py, zh=zh, ja=ja, ar=ar, ru=ru, digits=digits, emoji=emoji, rnd=rnd, lower=lower,
                b64=b64, hex=hexs, json=js, json_pretty=jsp, uuids=uuids, md=md, ws=ws, mixed=mixed, short="hi",
                one="a", empty_ish=" ")


if __name__ == "__main__":
    if sys.argv[1] == "--merge":
        texts, truth = json.loads(Path(sys.argv[2]).read_text()), json.loads(Path(sys.argv[3]).read_text())
        out = {"measured_with": "js-tiktoken 1.x (npm), encodings cl100k_base and o200k_base",
               "samples": {k: {"text": v, "cl100k": truth[k][0], "o200k": truth[k][1]} for k, v in texts.items()}}
        Path(sys.argv[4]).write_text(json.dumps(out, ensure_ascii=False, indent=1))
    else:
        Path(sys.argv[1]).write_text(json.dumps(samples(), ensure_ascii=False))

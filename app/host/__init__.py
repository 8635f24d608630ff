"""The machine Patchbay runs on: the OS keychain (``secrets.py``), the GPU and CPU (``hardware.py``), the local
Ollama server (``ollama.py``) and the output rate (``throughput.py``)."""

"""The Gradio web demo: ``mt demo --run RUN`` (see ``demo.app``)."""

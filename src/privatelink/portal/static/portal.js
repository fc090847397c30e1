// The portal's only script: copy buttons. Everything else works without script.
document.querySelectorAll("button[data-copy]").forEach((button) => {
  button.addEventListener("click", async () => {
    const source = document.getElementById(button.dataset.copy);
    const status = document.getElementById("copy-status");
    try {
      await navigator.clipboard.writeText(source.textContent.trim());
      status.textContent = "Copied";
    } catch (err) {
      status.textContent = "Copy failed: select the text and copy it";
    }
  });
});

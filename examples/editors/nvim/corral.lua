-- corral language server for Neovim 0.11+ (vim.lsp.config).
-- Put this file in ~/.config/nvim/plugin/ (or require it from init.lua); `corral` must be on
-- PATH, installed with: pip install 'corral[lsp]'
vim.lsp.config("corral", {
  cmd = { "corral", "server" },
  filetypes = { "python" },
  root_markers = { "pyproject.toml", ".git" },
  -- the same keys as in every editor; all optional (see the README, "corral server")
  settings = {
    corral = {
      baselined = "hint", -- or "hide": how findings accepted in the baseline are shown
      debounce = 150, -- milliseconds after the last keystroke before checking
    },
  },
})
vim.lsp.enable("corral")

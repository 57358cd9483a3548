;;; corral.el --- corral language server with Eglot (Emacs 29+)  -*- lexical-binding: t; -*-
;; Needs: pip install 'corral[lsp]'. Then M-x eglot in a Python buffer.
(with-eval-after-load 'eglot
  (add-to-list 'eglot-server-programs
               '((python-mode python-ts-mode) . ("corral" "server"))))
;; Settings (the same keys as in every editor), per project in .dir-locals.el:
;; ((python-mode . ((eglot-workspace-configuration . (:corral (:baselined "hint"))))))
;;; corral.el ends here

;;; dictated.el --- Insert the dictated daemon's transcripts at point  -*- lexical-binding: t; -*-

;; Copyright (C) 2026 The dictated authors
;; SPDX-License-Identifier: MIT

;; Author: The dictated authors
;; Version: 0.1.0
;; Package-Requires: ((emacs "26.1"))
;; Keywords: convenience, multimedia

;; This file is not part of GNU Emacs.

;;; Commentary:

;; dictated is a local, always-on dictation daemon.  This package inserts
;; each transcript it publishes at point in the buffer you started it in,
;; joined the way `dictated-type' types them: a space between utterances,
;; none before punctuation, none for Japanese and Chinese.  The spoken
;; commands "new line", "new paragraph" and "scratch that" (which takes back
;; exactly what the previous utterance inserted) are acted on.  A
;; transcript's own control characters are never inserted: ESC, DEL, C1 and
;; bidi controls are dropped, and a raw line break or tab is one space.
;;
;; M-x dictated-start   start inserting at point (turns on `dictated-mode',
;;                      whose lighter shows the daemon's state: Dict[PTT],
;;                      Dict[disarmed], Dict[off])
;; M-x dictated-stop    stop
;; M-x dictated-status  show the daemon's state
;;
;; Only what `dictated-type' would type is inserted: never a voice command
;; ("stop dictation"), nothing said while typing is disarmed.
;;
;; Transcripts come from `dictated-tail --json' run as a subprocess, so
;; Emacs never waits on the daemon; it waits for a daemon that is not
;; running yet and follows it across restarts with no gap or duplicate.

;;; Code:

(require 'json)
(require 'subr-x)

(defgroup dictated nil
  "Insert transcripts from the dictated daemon."
  :group 'convenience
  :prefix "dictated-")

(defcustom dictated-command
  '("dictated-tail" "--json" "--topic" "transcript" "--topic" "status" "--wait")
  "Command that prints the daemon's transcript and status events as JSON lines.
Add \"--endpoint\" \"tcp://...\" and \"--control\" \"tcp://...\" for a
daemon elsewhere."
  :type '(repeat string))

(defcustom dictated-status-command '("dictated" "status")
  "Command that prints the daemon's state."
  :type '(repeat string))

(defcustom dictated-spoken-commands '(new-line new-paragraph scratch-that)
  "Spoken commands acted on; the words of the others are inserted as text."
  :type '(set (const new-line) (const new-paragraph) (const scratch-that)))

(defconst dictated--command-patterns
  '((new-line . "new[ -]?line")
    (new-paragraph . "new[ -]?paragraph")
    (scratch-that . "scratch[ -]that"))
  "How a recognizer writes each spoken command (matched ignoring case).")

(defconst dictated--inserts '((new-line . "\n") (new-paragraph . "\n\n"))
  "What each spoken command inserts (scratch-that deletes instead).")

(defconst dictated--no-space-before (append ".,;:!?%)]}…”’»、。，．！？：；" nil)
  "Characters that follow the previous utterance without a space.")

(defconst dictated--no-space-after (append "([{“‘«\n\t " nil)
  "Characters after which an utterance starts without a space.")

(defconst dictated--history 100
  "Utterances \"scratch that\" can reach back through.")

(defvar dictated--process nil "The running `dictated-command' process.")
(defvar dictated--stderr-process nil "The pipe that reads its stderr.")
(defvar dictated--marker nil "Where the next transcript goes.")
(defvar dictated--typed nil "Text inserted per utterance, newest first.")
(defvar dictated--partial "" "An incomplete line of process output.")
(defvar dictated--stderr-partial "" "An incomplete line of process stderr.")
(defvar dictated--last-error "" "The last line the process printed on stderr.")
(defvar dictated--stopping nil "Non-nil while `dictated-stop' ends the process.")
(defvar dictated--state nil
  "The daemon's typing state from its status events.
An alist of mode, held, armed, listening.  A JSON false is :false, so
a field the daemon did not send (nil) is told apart.")

;;;; Composing utterances into edits (the rules of dictated-type)

(defconst dictated--dropped-regexp
  (concat "[" (string 0) "-" (string 8) (string #x0e) "-" (string #x1b)
          (string #x7f) "-" (string #x84) (string #x86) "-" (string #x9f)
          (string #x061c #x200e #x200f #x202a) "-" (string #x202e)
          (string #x2066) "-" (string #x2069) "]")
  "Characters never inserted: C0 and C1 controls but blanks, DEL, bidi controls.
ESC drives terminals; the bidi overrides, isolates and marks reorder what
text appears to say.  The same set as dictated.protocol.DROPPED.")

(defconst dictated--blank-run-regexp
  (concat "[ \t\n\v\f\r" (string #x1c) "-" (string #x1f #x85 #x2028 #x2029) "]+")
  "A run of spaces and line breaks, tabs and other whitespace controls.")

(defun dictated--plain (text)
  "TEXT as words: controls dropped, a run of blanks with a break one space.
A space, because a break parts words; only spoken commands make line breaks."
  (replace-regexp-in-string
   dictated--blank-run-regexp
   (lambda (run) (if (string-match-p "[^ ]" run) " " run))
   (replace-regexp-in-string dictated--dropped-regexp "" text t t)
   t t))

(defun dictated--before-cursor ()
  "The last character inserted by us, or nil."
  (let ((unit (seq-find (lambda (s) (not (string-empty-p s))) dictated--typed)))
    (and unit (aref unit (1- (length unit))))))

(defun dictated--emit (text actions)
  "Add inserting TEXT to ACTIONS (newest first); return the new list."
  (setcar dictated--typed (concat (car dictated--typed) text))
  (if (and actions (stringp (car actions)))
      (cons (concat (car actions) text) (cdr actions))
    (cons text actions)))

(defun dictated--words (words language actions)
  "Add WORDS of LANGUAGE to ACTIONS, after a space where one belongs."
  (let ((words (string-trim words))
        (tail (dictated--before-cursor)))
    (if (string-empty-p words)
        actions
      (dictated--emit
       (if (and tail
                (not (memq tail dictated--no-space-after))
                (not (memq (aref words 0) dictated--no-space-before))
                (not (string-match-p "\\`\\(ja\\|zh\\)" (downcase (or language "")))))
           (concat " " words)
         words)
       actions))))

(defun dictated--command-regexp ()
  "The enabled spoken commands and a regexp for them.
Group 99 is the command's words, group N matches for the Nth command."
  (let ((kinds (seq-filter (lambda (c) (memq (car c) dictated-spoken-commands))
                           dictated--command-patterns))
        (n 0))
    (when kinds
      (cons (mapcar #'car kinds)
            (concat "\\(?:^\\|\\W\\)\\(?99:"
                    (mapconcat (lambda (c) (format "\\(?%d:%s\\)" (setq n (1+ n)) (cdr c)))
                               kinds "\\|")
                    "\\)\\(?:\\W\\|$\\)")))))

(defun dictated-compose (text language)
  "The edits for one utterance TEXT in LANGUAGE, oldest first.
Each is a string to insert or (backspace . N) to delete N characters
before the insertion point."
  (let ((case-fold-search t)
        (spec (dictated--command-regexp))
        (actions nil)
        (pos 0)
        (text (dictated--plain text)))
    (push "" dictated--typed)
    (while (and spec (string-match (cdr spec) text pos))
      (let* ((start (match-beginning 99))
             (end (match-end 99))
             (kind (seq-find #'identity
                             (seq-map-indexed (lambda (k i) (and (match-beginning (1+ i)) k))
                                              (car spec)))))
        (setq actions (dictated--words (substring text pos start) language actions))
        (if (eq kind 'scratch-that)
            (progn
              (when (string-empty-p (car dictated--typed))
                (pop dictated--typed))
              (when dictated--typed
                (push (cons 'backspace (length (pop dictated--typed))) actions))
              (push "" dictated--typed))
          (setq actions (dictated--emit (cdr (assq kind dictated--inserts)) actions)))
        (setq pos (if (string-match "[.,;:!?]*[ \t\n]*" text end) (match-end 0) end))))
    (setq actions (dictated--words (substring text pos) language actions))
    (when (string-empty-p (car dictated--typed))
      (pop dictated--typed))
    (when (> (length dictated--typed) dictated--history)
      (setcdr (nthcdr (1- dictated--history) dictated--typed) nil))
    (nreverse actions)))

;;;; Applying edits in the buffer

(defun dictated--apply (actions)
  "Perform ACTIONS at `dictated--marker'; windows whose point is there follow."
  (with-current-buffer (marker-buffer dictated--marker)
    (let* ((pos (marker-position dictated--marker))
           (follow (= (point) pos))
           (windows (seq-filter (lambda (w) (= (window-point w) pos))
                                (get-buffer-window-list nil nil t))))
      (save-excursion
        (dolist (action actions)
          (goto-char dictated--marker)
          (if (stringp action)
              (insert action)           ; the marker advances (insertion type t)
            (delete-region (max (point-min) (- (point) (cdr action))) (point)))))
      (when follow
        (goto-char dictated--marker))
      (dolist (w windows)
        (set-window-point w dictated--marker)))))

(defun dictated--parse (line)
  "LINE as an alist, or nil when it is not a JSON object.
The native parser refuses a \\u0000 escape, which a transcript may hold;
json.el reads it (and `dictated-compose' drops the character)."
  (let ((value (or (and (fboundp 'json-parse-string)
                        (ignore-errors
                          (json-parse-string line :object-type 'alist
                                             :null-object nil :false-object :false)))
                   (ignore-errors
                     (let ((json-object-type 'alist) (json-false :false))
                       (json-read-from-string line))))))
    (and (consp value) value)))

(defun dictated--wanted (event)
  "Non-nil when EVENT is a final `dictated-type' would type.
Never a voice command; nothing said while typing was disarmed."
  (and (not (alist-get 'command event))
       (not (eq (alist-get 'armed event) :false))))

(defun dictated--on-status (event)
  "Keep the typing state of status EVENT; say a change of arming or listening."
  (let ((before (copy-alist dictated--state)))
    (dolist (key '(mode held armed listening))
      (when (assq key event)
        (setf (alist-get key dictated--state) (alist-get key event))))
    (dolist (key '(armed listening))
      (let ((old (assq key before)) (new (alist-get key dictated--state)))
        (when (and old (not (equal (cdr old) new)))
          (message "dictated: %s"
                   (if (eq key 'armed)
                       (if (eq new :false) "typing disarmed (`dictated typing on' arms it)"
                         "typing armed")
                     (if (eq new :false) "not listening" "listening"))))))
    (force-mode-line-update t)))

(defun dictated--lighter ()
  "The mode line lighter: \" Dict\", or with the state: [PTT], [disarmed], [off]."
  (let ((flags (delq nil
                     (list (and (eq (alist-get 'listening dictated--state) :false) "off")
                           (and (equal (alist-get 'mode dictated--state) "push-to-talk") "PTT")
                           (and (eq (alist-get 'held dictated--state) t) "held")
                           (and (eq (alist-get 'armed dictated--state) :false) "disarmed")))))
    (if flags (format " Dict[%s]" (string-join flags ",")) " Dict")))

(defun dictated--handle (line)
  "Insert the transcript in LINE, if it is one (other lines are ignored)."
  (let* ((event (dictated--parse line))
         (text (alist-get 'text event))
         (language (alist-get 'language event)))
    (when (equal (alist-get 'topic event) "status")
      (dictated--on-status event))
    (when (and (equal (alist-get 'topic event) "transcript")
               (dictated--wanted event)
               (stringp text)
               (not (string-blank-p text)))
      (if (not (buffer-live-p (marker-buffer dictated--marker)))
          (progn (message "dictated: the buffer dictation was started in is gone")
                 (dictated-stop))
        (condition-case err
            (dictated--apply (dictated-compose text (if (stringp language) language "")))
          (error (message "dictated: could not insert: %s" (error-message-string err))))))))

(defun dictated--lines (chunk partial-var)
  "Complete lines of CHUNK, keeping the unfinished rest in PARTIAL-VAR."
  (let ((lines (split-string (concat (symbol-value partial-var) chunk) "\n")))
    (set partial-var (car (last lines)))
    (butlast lines)))

(defun dictated--filter (_process chunk)
  "Handle the transcript events in CHUNK of process output."
  (dolist (line (dictated--lines chunk 'dictated--partial))
    (unless (string-empty-p line)
      (dictated--handle line))))

(defun dictated--stderr-filter (_process chunk)
  "Show the subscriber's notices (waiting, connected, went away) from CHUNK."
  (dolist (line (dictated--lines chunk 'dictated--stderr-partial))
    (unless (string-empty-p line)
      (setq dictated--last-error line)
      (message "dictated: %s" (string-remove-prefix "dictated-tail: " line)))))

(defun dictated--sentinel (process _event)
  "Report PROCESS ending unless `dictated-stop' ended it."
  (unless (process-live-p process)
    (let ((buffer (and dictated--marker (marker-buffer dictated--marker))))
      (when (process-live-p dictated--stderr-process)
        (accept-process-output dictated--stderr-process 0.2)) ; its last words, if any
      (unless dictated--stopping
        (message "dictated: `%s' exited with code %d%s"
                 (car dictated-command) (process-exit-status process)
                 (if (string-empty-p dictated--last-error) ""
                   (concat ": " dictated--last-error))))
      (when (eq process dictated--process)
        (setq dictated--process nil)
        (when (buffer-live-p buffer)
          (with-current-buffer buffer
            (let ((dictated--stopping t))
              (dictated-mode -1))))))))

;;;; Commands

(defun dictated--start ()
  "Start inserting transcripts at point in the current buffer."
  (let ((program (car dictated-command)))
    (unless (executable-find program)
      (error "dictated: `%s' is not on PATH; install dictated (pip install dictated) or set `dictated-command'" program))
    (setq dictated--marker (copy-marker (point) t)
          dictated--typed nil
          dictated--partial ""
          dictated--stderr-partial ""
          dictated--last-error ""
          dictated--state nil
          dictated--stopping nil)
    (setq dictated--stderr-process
          (make-pipe-process :name "dictated stderr" :noquery t :coding 'utf-8
                             :filter #'dictated--stderr-filter))
    (setq dictated--process
          (make-process
           :name "dictated"
           :command dictated-command
           :connection-type 'pipe
           :noquery t
           :coding 'utf-8
           :filter #'dictated--filter
           :sentinel #'dictated--sentinel
           :stderr dictated--stderr-process))
    (add-hook 'kill-buffer-hook #'dictated-stop nil t)
    (message "dictated: inserting transcripts into %s (M-x dictated-stop to end)" (buffer-name))))

(defun dictated--end ()
  "Stop the subscriber process and forget the insertion point."
  (remove-hook 'kill-buffer-hook #'dictated-stop t)
  (let ((process dictated--process))
    (setq dictated--process nil)
    (when (process-live-p process)
      (setq dictated--stopping t)
      (delete-process process)))
  (when (process-live-p dictated--stderr-process)
    (delete-process dictated--stderr-process))
  (setq dictated--stderr-process nil)
  (when dictated--marker
    (set-marker dictated--marker nil)
    (setq dictated--marker nil)))

;;;###autoload
(define-minor-mode dictated-mode
  "Insert the dictated daemon's transcripts at point in this buffer."
  :lighter (:eval (dictated--lighter))
  (if dictated-mode
      (if (and dictated--process (process-live-p dictated--process))
          (progn
            (setq dictated-mode nil)
            (user-error "dictated: already inserting into %s; M-x dictated-stop first"
                        (buffer-name (marker-buffer dictated--marker))))
        (condition-case err
            (dictated--start)
          (error (setq dictated-mode nil)
                 (message "%s" (error-message-string err)))))
    (when (and dictated--marker (eq (marker-buffer dictated--marker) (current-buffer)))
      (dictated--end)
      (unless dictated--stopping
        (message "dictated: stopped")))))

;;;###autoload
(defun dictated-start ()
  "Insert each transcript from the dictated daemon at point in this buffer."
  (interactive)
  (dictated-mode 1))

;;;###autoload
(defun dictated-stop ()
  "Stop inserting transcripts, whichever buffer they go to."
  (interactive)
  (let ((buffer (and dictated--marker (marker-buffer dictated--marker))))
    (if (buffer-live-p buffer)
        (with-current-buffer buffer (dictated-mode -1))
      (dictated--end))))

;;;###autoload
(defun dictated-status ()
  "Show the daemon's state (runs `dictated-status-command')."
  (interactive)
  (let ((program (car dictated-status-command))
        (output (generate-new-buffer " *dictated status*")))
    (if (not (executable-find program))
        (message "dictated: `%s' is not on PATH; install dictated (pip install dictated)" program)
      (make-process
       :name "dictated status"
       :command dictated-status-command
       :buffer output
       :noquery t
       :sentinel (lambda (process _event)
                   (unless (process-live-p process)
                     (let ((text (string-trim (with-current-buffer output (buffer-string))))
                           (here (if dictated--marker
                                     (format "inserting into %s"
                                             (buffer-name (marker-buffer dictated--marker)))
                                   "not inserting")))
                       (kill-buffer output)
                       (message "dictated: %s (%s)"
                                (string-remove-prefix "dictated: " text) here))))))))

(provide 'dictated)
;;; dictated.el ends here

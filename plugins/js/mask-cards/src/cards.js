// Finding and masking payment card numbers in text.

// A run of digits, each pair optionally separated by one space or dash:
// "4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111".
const DIGIT_RUN = /\d(?:[ -]?\d)*/g;
const MIN_DIGITS = 13;
const MAX_DIGITS = 19;

// The Luhn check every payment card number passes.
export function luhnValid(digits) {
  let sum = 0;
  for (let i = 0; i < digits.length; i++) {
    let d = digits.charCodeAt(digits.length - 1 - i) - 48;
    if (i % 2 === 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 === 0;
}

// Replaces all but the last `keep` digits of `run` with `*`, leaving its
// separators in place: "4111 1111 1111 1111" -> "**** **** **** 1111".
function maskDigits(run, digitCount, keep) {
  let toMask = digitCount - keep;
  let out = '';
  for (const c of run) {
    if (c >= '0' && c <= '9' && toMask > 0) {
      out += '*';
      toMask--;
    } else {
      out += c;
    }
  }
  return out;
}

function isCardNumber(digits) {
  return digits.length >= MIN_DIGITS && digits.length <= MAX_DIGITS && luhnValid(digits);
}

// Masks every card number in `text`: a whole run of 13 to 19 digits that
// passes the Luhn check. Returns the new text and how many were masked.
export function maskCards(text, keep) {
  let count = 0;
  const masked = text.replace(DIGIT_RUN, (run) => {
    const digits = run.replace(/[ -]/g, '');
    if (!isCardNumber(digits)) return run;
    count++;
    return maskDigits(run, digits.length, keep);
  });
  return { text: masked, count };
}
